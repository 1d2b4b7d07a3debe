package controller

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshca/meshca/rotator"
)

// TestRestartRule: which workloads restart-on-rotate may patch, and what a
// refusal says.
func TestRestartRule(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		cfg         WorkloadConfig
		ns          string
		wantReason  string
		wantMessage string
	}{
		"app namespace":                 {cfg: WorkloadConfig{Namespace: "meshca-system"}, ns: "shop"},
		"no own namespace configured":   {ns: "meshca-system"},
		"kube-system":                   {cfg: WorkloadConfig{Namespace: "meshca-system"}, ns: "kube-system", wantReason: EventRestartRefused, wantMessage: "never patches workloads in kube-system"},
		"kube-system without own":       {ns: "kube-system", wantReason: EventRestartRefused, wantMessage: "kube-system"},
		"meshca's own namespace":        {cfg: WorkloadConfig{Namespace: "meshca-system"}, ns: "meshca-system", wantReason: EventRestartRefused, wantMessage: "its own namespace meshca-system (--namespace)"},
		"disabled":                      {cfg: WorkloadConfig{DisableRestartOnRotate: true}, ns: "shop", wantReason: EventRestartDisabled, wantMessage: "disabled by the operator (--restart-on-rotate=false)"},
		"disabled wins over namespaces": {cfg: WorkloadConfig{DisableRestartOnRotate: true, Namespace: "meshca-system"}, ns: "kube-system", wantReason: EventRestartDisabled, wantMessage: "disabled by the operator"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			reason, message, refused := restartRule(c.cfg, c.ns)
			if refused != (c.wantReason != "") || reason != c.wantReason || !strings.Contains(message, c.wantMessage) {
				t.Errorf("restartRule(%+v, %q) = %q, %q, %v; want reason %q with %q", c.cfg, c.ns, reason, message, refused, c.wantReason, c.wantMessage)
			}
		})
	}
}

// TestMayRestartWarnsOncePerRenewal: a refused restart is one Warning Event
// in the reconcile that renewed, and none in the later reconciles that find
// the same certificate, nor for a first issue.
func TestMayRestartWarnsOncePerRenewal(t *testing.T) {
	t.Parallel()
	rec := &fakeRecorder{}
	r := &WorkloadReconciler{Recorder: rec, Config: WorkloadConfig{DisableRestartOnRotate: true}}
	obj := workload("Deployment", "shop", "web", "", certAnn())
	for _, kept := range []keepResult{
		{Serial: "01", Reason: rotator.ReasonMissing, Issued: true},      // first issue: nothing to roll
		{Serial: "02", Reason: rotator.ReasonNamesChanged, Issued: true}, // the renewal
		{Serial: "02", Reason: rotator.ReasonNamesChanged},               // its watch event
		{Serial: "02", Reason: rotator.ReasonNamesChanged},               // an audit sweep
	} {
		if r.mayRestart(obj, kept) {
			t.Fatalf("mayRestart(%+v) = true with restart-on-rotate disabled", kept)
		}
	}
	got := rec.events()
	if len(got) != 1 || got[0].typ != corev1.EventTypeWarning || got[0].reason != EventRestartDisabled || !strings.Contains(got[0].note, "02") {
		t.Errorf("Events %+v, want one Warning %s about serial 02", got, EventRestartDisabled)
	}
}
