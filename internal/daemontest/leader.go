package daemontest

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/internal/testenv"
)

// LeaseName is the Lease meshca serve elects its leader with.
const LeaseName = "meshca"

// WaitLeader waits up to timeout until the Lease in ns names a holder other
// than notHolder and exactly one of replicas reports meshca_leader 1, and
// returns that replica and the holder. Two replicas reporting 1 at once
// fail the test at once.
func WaitLeader(t testing.TB, env *testenv.Env, ns string, replicas []*Daemon, notHolder string, timeout time.Duration) (*Daemon, string) {
	t.Helper()
	var leader *Daemon
	var holder string
	Eventually(t, timeout, "exactly one leader", func(ctx context.Context) (bool, error) {
		lease, err := env.Clientset.CoordinationV1().Leases(ns).Get(ctx, LeaseName, metav1.GetOptions{})
		if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" || *lease.Spec.HolderIdentity == notHolder {
			return false, err
		}
		holder = *lease.Spec.HolderIdentity
		var leading []*Daemon
		for _, d := range replicas {
			code, body, err := Get(ctx, d.MetricsAddr, "/metrics")
			if err != nil || code != http.StatusOK {
				return false, fmt.Errorf("scrape %s: %d %v", d.Name, code, err)
			}
			v, ok := ParseSamples(body).Value("meshca_leader")
			if !ok {
				return false, fmt.Errorf("%s has no meshca_leader", d.Name)
			}
			if v == 1 {
				leading = append(leading, d)
			}
		}
		if len(leading) > 1 {
			return false, fmt.Errorf("%w: %d replicas report meshca_leader 1", ErrGiveUp, len(leading))
		}
		if len(leading) == 1 {
			leader = leading[0]
			return true, nil
		}
		return false, nil
	})
	return leader, holder
}
