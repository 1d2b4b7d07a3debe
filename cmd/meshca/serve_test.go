package main

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/rotator"
)

// options parses args (and env) the way serve does, without running it.
func options(t *testing.T, env map[string]string, args ...string) *serveOptions {
	t.Helper()
	o := &serveOptions{}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	o.addFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := bindEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestLeaderElectionTimings(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		env     map[string]string
		args    []string
		want    [3]time.Duration
		wantErr string
	}{
		"controller-runtime's defaults": {want: [3]time.Duration{15 * time.Second, 10 * time.Second, 2 * time.Second}},
		"flags": {
			args: []string{"--leader-election-lease-duration=4s", "--leader-election-renew-deadline=3s", "--leader-election-retry-period=500ms"},
			want: [3]time.Duration{4 * time.Second, 3 * time.Second, 500 * time.Millisecond},
		},
		"environment": {
			env:  map[string]string{"MESHCA_LEADER_ELECTION_LEASE_DURATION": "30s", "MESHCA_LEADER_ELECTION_RENEW_DEADLINE": "20s"},
			want: [3]time.Duration{30 * time.Second, 20 * time.Second, 2 * time.Second},
		},
		"renew deadline not below lease": {
			args: []string{"--leader-election-lease-duration=10s"}, wantErr: "renew deadline",
		},
		"retry period too close to renew deadline": {
			args: []string{"--leader-election-renew-deadline=2s", "--leader-election-retry-period=2s"}, wantErr: "retry period",
		},
		"zero": {args: []string{"--leader-election-retry-period=0s"}, wantErr: "must be positive"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o := options(t, tc.env, tc.args...)
			err := o.validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("validate() = %v, want an error about %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := [3]time.Duration{o.leaseDuration, o.renewDeadline, o.retryPeriod}; got != tc.want {
				t.Errorf("lease, renew, retry = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBundleNamespaces(t *testing.T) {
	t.Parallel()
	ns := func(name string, l ...string) labels.Set {
		s := labels.Set{"kubernetes.io/metadata.name": name}
		for i := 0; i+1 < len(l); i += 2 {
			s[l[i]] = l[i+1]
		}
		return s
	}
	tests := map[string]struct {
		args      []string
		match     []labels.Set
		dontMatch []labels.Set
	}{
		"all":      {match: []labels.Set{ns("a"), ns("b")}},
		"selector": {args: []string{"--bundle-namespace-selector=mesh=on"}, match: []labels.Set{ns("a", "mesh", "on")}, dontMatch: []labels.Set{ns("a")}},
		"watched only": {
			args:      []string{"--watch-namespaces=a,b"},
			match:     []labels.Set{ns("a"), ns("b")},
			dontMatch: []labels.Set{ns("c")},
		},
		"watched and selected": {
			args:      []string{"--watch-namespaces=a,b", "--bundle-namespace-selector=mesh=on"},
			match:     []labels.Set{ns("a", "mesh", "on")},
			dontMatch: []labels.Set{ns("a"), ns("c", "mesh", "on")},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sel, err := bundleNamespaces(options(t, nil, tc.args...))
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range tc.match {
				if !sel.Matches(l) {
					t.Errorf("%s does not select %v", sel, l)
				}
			}
			for _, l := range tc.dontMatch {
				if sel.Matches(l) {
					t.Errorf("%s selects %v", sel, l)
				}
			}
		})
	}
}

func TestServeMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	g, err := leaderGauge(reg)
	if err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(g); v != 0 {
		t.Errorf("meshca_leader before leading = %v, want 0", v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- leading(g)(ctx) }()
	for testutil.ToFloat64(g) != 1 {
		runtime.Gosched()
	}
	cancel()
	if err := <-done; err != nil || testutil.ToFloat64(g) != 0 {
		t.Errorf("after leading stops: err %v, meshca_leader %v, want nil and 0", err, testutil.ToFloat64(g))
	}
	c, err := ca.New(ca.Config{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	state := ca.NewState(c, "generated", time.Now())
	if err := reg.Register(newCACollector(func() *ca.State { return state }, rotator.CAPolicy{})); err != nil {
		t.Fatal(err)
	}
	want := `# HELP meshca_ca_not_after_timestamp_seconds Expiry of the CA certificates by slot (current, next, previous) and certificate (root, intermediate).
# TYPE meshca_ca_not_after_timestamp_seconds gauge
meshca_ca_not_after_timestamp_seconds{cert="intermediate",slot="current"} ` + itoa(c.Intermediate.NotAfter.Unix()) + `
meshca_ca_not_after_timestamp_seconds{cert="root",slot="current"} ` + itoa(c.Root.NotAfter.Unix()) + `
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "meshca_ca_not_after_timestamp_seconds"); err != nil {
		t.Error(err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
