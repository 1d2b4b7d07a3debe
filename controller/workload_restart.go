package controller

import (
	"context"
	"fmt"
	"strings"

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
func (r *WorkloadReconciler) mayRestart(obj client.Object, kept keepResult) bool {
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

// restartOnRotate stamps the pod template with the revision of what is now
// in the Secret (certRevision), so the workload rolls onto it, when its pods
// run an older certificate or trust bundle (podsStale). The rule is
// level-based, so a failed patch is retried by the next reconcile.
func (r *WorkloadReconciler) restartOnRotate(ctx context.Context, obj client.Object, kept keepResult) error {
	rev, why, stale := podsStale(podTemplate(obj).Annotations[meta.AnnotationCertRevision], kept)
	if !stale {
		return nil
	}
	base := obj.DeepCopyObject().(client.Object)
	tmpl := podTemplate(obj)
	if tmpl.Annotations == nil {
		tmpl.Annotations = map[string]string{}
	}
	tmpl.Annotations[meta.AnnotationCertRevision] = rev
	if err := r.Client.Patch(ctx, obj, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("stamp pod template of %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
	}
	r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, EventRestarted, "Restart",
		"pod template annotated %s=%s so the pods roll onto %s", meta.AnnotationCertRevision, rev, why)
	return nil
}

// certRevision names what a Secret holds for restart-on-rotate: the
// certificate's serial and the digest of its ca.crt.
func certRevision(serial, bundle string) string { return serial + "." + bundle }

// podsStale decides, from the pod template's meshca.io/cert-revision
// (stamped) and what the Secret holds (kept), whether the workload's pods
// run an older certificate or trust bundle than the Secret's. It returns
// the revision to stamp and what changed.
//
// A template meshca never stamped has pods that started with the Secret's
// certificate if it was a first issue (reason Missing), and with the
// bundle it was issued with: only a bundle change since then makes them
// stale. After any other reason they started with an older certificate.
// A revision stamped before the bundle was part of it (a serial alone)
// names the certificate only; the bundle is then judged as for an
// unstamped template.
func podsStale(stamped string, kept keepResult) (rev, why string, stale bool) {
	if kept.Serial == "" || kept.Reason == "" || kept.Bundle == "" {
		return "", "", false
	}
	rev = certRevision(kept.Serial, kept.Bundle)
	bundleMoved := kept.IssuedBundle != "" && kept.IssuedBundle != kept.Bundle
	renewed := "the renewed certificate (" + kept.Reason + ")"
	switch {
	case stamped == rev:
		return rev, "", false
	case stamped == "" && kept.Reason == rotator.ReasonMissing:
		return rev, "the new trust bundle", bundleMoved
	case stamped == "":
		return rev, renewed, true
	case !strings.Contains(stamped, "."):
		if stamped != kept.Serial {
			return rev, renewed, true
		}
		return rev, "the new trust bundle", bundleMoved
	case !strings.HasPrefix(stamped, kept.Serial+"."):
		return rev, renewed, true
	}
	return rev, "the new trust bundle", true
}
