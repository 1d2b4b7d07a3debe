package status

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Style says how a table is drawn. The zero value is plain: absolute UTC
// times and no colour, for pipes and files.
type Style struct {
	// Color adds ANSI colour to states.
	Color bool
	// Relative shows times as "in 3h" or "5m ago".
	Relative bool
}

// JSON writes the report as indented JSON.
func JSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Table writes the report as tables for people.
func Table(w io.Writer, r *Report, st Style) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tSECRET\tSOURCE\tIDENTITY\tNOT AFTER\tRENEW AT\tSTATE\tREASON")
	for _, c := range r.Certificates {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Namespace, c.Secret, dash(c.Source), dash(c.Identity),
			st.when(c.NotAfter, r.Time), st.when(c.RenewAt, r.Time), st.state(c.State), dash(c.Reason))
	}
	if len(r.Certificates) == 0 {
		fmt.Fprintln(tw, "(no managed certificates)")
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "CA SLOT\tSUBJECT\tALGORITHM\tFINGERPRINT\tINTERMEDIATE NOT AFTER\tROOT NOT AFTER")
	for _, s := range r.CA {
		fp := s.Fingerprint
		if len(fp) > 16 {
			fp = fp[:16] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Slot, s.Subject, s.KeyAlgorithm, fp,
			st.when(s.IntermediateNotAfter, r.Time), st.when(s.RootNotAfter, r.Time))
	}
	if r.CAError != "" {
		fmt.Fprintf(tw, "(%s)\n", r.CAError)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	leader := "none (no Lease held)"
	if r.Leader != nil {
		leader = r.Leader.Identity
		if !r.Leader.RenewedAt.IsZero() {
			leader += ", renewed " + st.when(r.Leader.RenewedAt, r.Time)
		}
	}
	_, err := fmt.Fprintf(w, "\ntrust bundle: %d root(s)   leader: %s   namespace: %s\n", r.BundleRoots, leader, r.Namespace)
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (st Style) when(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if !st.Relative {
		return t.UTC().Format(time.RFC3339)
	}
	d := t.Sub(now)
	if d < 0 {
		return human(-d) + " ago"
	}
	return "in " + human(d)
}

// human rounds a duration to its largest sensible unit.
func human(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	case d < 2*365*24*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
	return fmt.Sprintf("%dy", int(d.Hours()/24/365))
}

var colors = map[string]string{
	StateReady: "32", StateRenewing: "33", StateExpired: "31", StateInvalid: "31", StateBundle: "36",
}

func (st Style) state(s string) string {
	if !st.Color {
		return s
	}
	c, ok := colors[s]
	if !ok {
		return s
	}
	// STATE is the second-to-last column, so the escape bytes tabwriter
	// counts as width shift only the REASON column, equally on every row.
	return "\x1b[" + c + "m" + s + "\x1b[0m"
}
