package controller

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/rotator"
)

// Warning Events of a restart-on-rotate that meshca refuses to do. The
// renewed certificate is in the Secret either way; only the roll is left to
// whoever may do it.
const (
	// EventRestartDisabled: the operator has turned restart-on-rotate off
	// (--restart-on-rotate=false; the chart's rbac.restartOnRotate=false,
	// which also withholds patch on workloads).
	EventRestartDisabled = "RestartDisabled"
	// EventRestartRefused: the workload is in kube-system or in meshca's own
	// namespace, whose workloads meshca never patches.
	EventRestartRefused = "RestartRefused"
)

// restartRule decides whether restart-on-rotate may patch a workload in
// namespace ns. It returns the Event reason and message of a refusal, or
// refused false when the patch may go ahead. The patch is the only write
// meshca makes to a workload, so these rules are all that stand between a
// renewal and a rollout the operator did not want:
//   - the operator can turn it off for the whole daemon;
//   - kube-system holds the cluster's own components, whose rollouts are
//     the cluster administrator's to schedule;
//   - meshca's own namespace holds meshca itself: rolling it from its own
//     renewals would take the leader down in the middle of its work.
//
// Certificates are still issued in those namespaces: an administrator who
// annotated a workload there asked for one, and rolls it themselves.
func restartRule(cfg WorkloadConfig, ns string) (reason, message string, refused bool) {
	switch {
	case cfg.DisableRestartOnRotate:
		return EventRestartDisabled, "restart-on-rotate is disabled by the operator (--restart-on-rotate=false)", true
	case ns == metav1.NamespaceSystem:
		return EventRestartRefused, "meshca never patches workloads in " + metav1.NamespaceSystem, true
	case cfg.Namespace != "" && ns == cfg.Namespace:
		return EventRestartRefused, fmt.Sprintf("meshca never patches workloads in its own namespace %s (--namespace)", ns), true
	}
	return "", "", false
}

// mayRestart reports whether restartOnRotate may patch obj. When a rule
// refuses, it records a Warning Event naming the rule once per renewal:
// only in the reconcile that wrote the renewed certificate (kept.Issued),
// so that watch events and audit sweeps, which find the same certificate,
// neither repeat it nor try the patch.
func (r *WorkloadReconciler) mayRestart(obj client.Object, kept keptCert) bool {
	reason, message, refused := restartRule(r.Config, obj.GetNamespace())
	if !refused {
		return true
	}
	if kept.Issued && kept.Serial != "" && kept.Reason != "" && kept.Reason != rotator.ReasonMissing {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, reason, "Restart",
			"renewed certificate %s (%s) is in the Secret, but the pod template was not annotated %s: %s; roll the workload to use it",
			kept.Serial, kept.Reason, meta.AnnotationCertRevision, message)
	}
	return false
}
