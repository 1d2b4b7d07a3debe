package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Figure is one measured quantity: every run's value, summarised as a
// median with its spread (min-max).
type Figure struct {
	Section string    `json:"section"`
	Name    string    `json:"name"`
	Unit    string    `json:"unit"`
	Values  []float64 `json:"values"`
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	// LowerBound marks a figure capped by a timeout: the true value is
	// at least this.
	LowerBound bool `json:"lowerBound,omitempty"`
	// Projected marks an extrapolation from a capped run, not a
	// measurement; the table prints it with "~".
	Projected bool   `json:"projected,omitempty"`
	Note      string `json:"note,omitempty"`
}

// Goal is a target on one figure's median.
type Goal struct {
	Figure string  `json:"figure"`
	Op     string  `json:"op"` // ">=" or "<="
	Target float64 `json:"target"`
	// Met is nil when the figure is missing or is a lower bound that
	// does not settle the goal.
	Met  *bool  `json:"met,omitempty"`
	Text string `json:"text"`
	// Basis is "measured", or "lower bound" when the run was capped.
	Basis string `json:"basis,omitempty"`
	// Projected is the figure's "(projected)" companion, when the run was
	// capped and a projection could be made. It never decides Met.
	Projected *float64 `json:"projected,omitempty"`
}

// verdict is the goal's state in words.
func (g *Goal) verdict() string {
	switch {
	case g.Met != nil && *g.Met:
		return "met"
	case g.Met != nil:
		return "missed"
	case g.Basis == "lower bound":
		return "not shown"
	}
	return "n/a"
}

// basis says what the verdict rests on: "measured" or "lower bound (run
// capped)", plus "; projected ~y" where there is a projection.
func (g *Goal) basis(f *Figure) string {
	if f == nil || len(f.Values) == 0 {
		return ""
	}
	out := "measured"
	if f.LowerBound {
		out = "lower bound (run capped)"
	}
	if g.Projected != nil {
		out += "; projected ~" + fmtNum(*g.Projected) + " (not measured)"
	}
	return out
}

// Results is the harness's JSON output.
type Results struct {
	Date     string            `json:"date"`
	Machine  map[string]string `json:"machine"`
	Versions map[string]string `json:"versions"`
	Config   map[string]string `json:"config"`
	Figures  []*Figure         `json:"figures"`
	Goals    []*Goal           `json:"goals"`
	Skipped  []string          `json:"skipped,omitempty"`
	Elapsed  string            `json:"elapsed"`
}

// add records values under name; a name seen before gets them appended.
func (r *Results) add(section, name, unit string, values ...float64) *Figure {
	if f := r.figure(name); f != nil {
		f.Values = append(f.Values, values...)
		f.summarise()
		return f
	}
	f := &Figure{Section: section, Name: name, Unit: unit, Values: values}
	f.summarise()
	r.Figures = append(r.Figures, f)
	return f
}

func (r *Results) figure(name string) *Figure {
	for _, f := range r.Figures {
		if f.Name == name {
			return f
		}
	}
	return nil
}

func (f *Figure) summarise() {
	if len(f.Values) == 0 {
		return
	}
	s := slices.Clone(f.Values)
	slices.Sort(s)
	f.Min, f.Max = s[0], s[len(s)-1]
	if n := len(s); n%2 == 1 {
		f.Median = s[n/2]
	} else {
		f.Median = (s[n/2-1] + s[n/2]) / 2
	}
}

// ratios divides a[i] by b[i]: comparisons made within one run.
func ratios(a, b []float64) []float64 {
	out := make([]float64, 0, len(a))
	for i := range min(len(a), len(b)) {
		if b[i] != 0 {
			out = append(out, a[i]/b[i])
		}
	}
	return out
}

func (r *Results) checkGoals() {
	for _, g := range r.Goals {
		g.Met, g.Basis, g.Projected = nil, "", nil
		f := r.figure(g.Figure)
		if f == nil || len(f.Values) == 0 {
			continue
		}
		met := f.Median >= g.Target
		if g.Op == "<=" {
			met = f.Median <= g.Target
		}
		g.Basis = "measured"
		if p := r.figure(g.Figure + " (projected)"); p != nil && len(p.Values) > 0 {
			v := p.Median
			g.Projected = &v
		}
		if f.LowerBound {
			g.Basis = "lower bound"
			// The true value is at least the median: that settles ">="
			// only if it is met already and "<=" only if it is missed.
			if (g.Op == ">=") != met {
				continue
			}
		}
		g.Met = &met
	}
}

func fmtNum(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// print writes the one summary table.
func (r *Results) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "section\tmeasure\tmedian\tspread (min-max)\truns\tunit\tgoal\n")
	goals := map[string]*Goal{}
	for _, g := range r.Goals {
		goals[g.Figure] = g
	}
	for _, f := range r.Figures {
		med := fmtNum(f.Median)
		if f.LowerBound {
			med = ">" + med
		}
		if f.Projected {
			med = "~" + med
		}
		goal := ""
		if g := goals[f.Name]; g != nil {
			goal = fmt.Sprintf("%s %s %s", g.Op, fmtNum(g.Target), strings.ToUpper(g.verdict()))
			if g.Basis != "measured" {
				goal += " (" + g.basis(f) + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s-%s\t%d\t%s\t%s\n", f.Section, f.Name, med, fmtNum(f.Min), fmtNum(f.Max), len(f.Values), f.Unit, goal)
	}
	tw.Flush()
	if len(r.Skipped) > 0 {
		fmt.Fprintf(w, "\nnot run: %s\n", strings.Join(r.Skipped, "; "))
	}
	fmt.Fprintf(w, "harness time: %s\n", r.Elapsed)
}

func secs(d time.Duration) float64 { return d.Seconds() }

// markdown writes the table as Markdown, for bench/RESULTS.md.
func (r *Results) markdown(w io.Writer) {
	goals := map[string]*Goal{}
	for _, g := range r.Goals {
		goals[g.Figure] = g
	}
	fmt.Fprintln(w, "| section | measure | median | spread (min-max) | runs | unit | goal |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---|---|")
	for _, f := range r.Figures {
		med := fmtNum(f.Median)
		if f.LowerBound {
			med = "> " + med
		}
		if f.Projected {
			med = "~" + med + " (projected)"
		}
		goal := ""
		if g := goals[f.Name]; g != nil && g.Basis != "" {
			goal = fmt.Sprintf("%s %s **%s**", g.Op, fmtNum(g.Target), g.verdict())
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s-%s | %d | %s | %s |\n", f.Section, f.Name, med, fmtNum(f.Min), fmtNum(f.Max), len(f.Values), f.Unit, goal)
	}
}

// markdownGoals writes the goals as Markdown: each verdict with what it
// rests on, measured or a lower bound, and any projection beside it.
func (r *Results) markdownGoals(w io.Writer) {
	fmt.Fprintln(w, "| goal | target | result (median, spread) | basis | verdict |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, g := range r.Goals {
		f := r.figure(g.Figure)
		result := "not run"
		if f != nil && len(f.Values) > 0 {
			result = fmt.Sprintf("%s %s (%s-%s, n=%d)", fmtNum(f.Median), f.Unit, fmtNum(f.Min), fmtNum(f.Max), len(f.Values))
			if f.LowerBound {
				result = "> " + result
			}
		}
		fmt.Fprintf(w, "| %s | %s %s | %s | %s | **%s** |\n", g.Text, g.Op, fmtNum(g.Target), result, g.basis(f), g.verdict())
	}
}
