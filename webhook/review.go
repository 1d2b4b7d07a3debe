package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
)

// Results recorded in the request counter.
const (
	resultPatched    = "patched"    // allowed with a patch
	resultUnchanged  = "unchanged"  // annotated and already injected: allowed, empty patch
	resultIgnored    = "ignored"    // not annotated, or an operation or kind the webhook leaves alone
	resultDenied     = "denied"     // allowed=false: a conflict or an undecodable object
	resultBadRequest = "badrequest" // HTTP 4xx: not an AdmissionReview at all
	resultBusy       = "busy"       // HTTP 429: past an in-flight cap, not read
)

// handledKinds are the apps/v1 kinds whose pod template the webhook mutates.
var handledKinds = map[string]bool{"Deployment": true, "StatefulSet": true, "DaemonSet": true}

// kindLabel bounds the kind label to known values: the kind comes from the
// request body, and a label must not grow with what callers send.
func kindLabel(req *admissionv1.AdmissionRequest) string {
	if req == nil {
		return "unknown"
	}
	if req.Kind.Group == "apps" && req.Kind.Version == "v1" && handledKinds[req.Kind.Kind] {
		return req.Kind.Kind
	}
	return "other"
}

// admit decides one AdmissionRequest. It never fails: problems with the
// object become a denial with a message, kinds and operations it does not
// handle are allowed unchanged.
func admit(req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, string) {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	gvk := req.Kind
	if gvk.Group != "apps" || gvk.Version != "v1" || !handledKinds[gvk.Kind] {
		resp.Result = &metav1.Status{Message: fmt.Sprintf("meshca webhook does not handle %s; allowed unchanged", gvkString(gvk))}
		return resp, resultIgnored
	}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return resp, resultIgnored
	}
	var w workload
	err := errors.New("no object in the request")
	if len(req.Object.Raw) > 0 {
		err = kjson.UnmarshalCaseSensitivePreserveInts(req.Object.Raw, &w)
	}
	if err != nil {
		return deny(resp, http.StatusBadRequest, fmt.Sprintf("meshca webhook: decode %s %s: %v", gvk.Kind, req.Name, err)), resultDenied
	}
	in, err := wants(&w, req.Name)
	if err != nil {
		return deny(resp, http.StatusForbidden, fmt.Sprintf("meshca webhook: %s %s: %v", gvk.Kind, objectName(&w, req), err)), resultDenied
	}
	ops, err := plan(&w, in)
	if err != nil {
		return deny(resp, http.StatusForbidden, fmt.Sprintf("meshca webhook: %s %s: %v", gvk.Kind, objectName(&w, req), err)), resultDenied
	}
	if !in.trust && !in.cert {
		return resp, resultIgnored
	}
	if len(ops) == 0 {
		return resp, resultUnchanged
	}
	patch, err := json.Marshal(ops)
	if err != nil { // cannot happen: ops hold only core/v1 values
		return deny(resp, http.StatusInternalServerError, fmt.Sprintf("meshca webhook: encode patch: %v", err)), resultDenied
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	return resp, resultPatched
}

func deny(resp *admissionv1.AdmissionResponse, code int32, msg string) *admissionv1.AdmissionResponse {
	resp.Allowed = false
	resp.Result = &metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    code,
		Reason:  reasons[code],
		Message: msg,
	}
	return resp
}

var reasons = map[int32]metav1.StatusReason{
	http.StatusBadRequest:          metav1.StatusReasonBadRequest,
	http.StatusForbidden:           metav1.StatusReasonForbidden,
	http.StatusInternalServerError: metav1.StatusReasonInternalError,
}

func objectName(w *workload, req *admissionv1.AdmissionRequest) string {
	name := w.Metadata.Name
	if name == "" {
		name = req.Name
	}
	if name == "" {
		name = w.Metadata.GenerateName + "*"
	}
	if ns := req.Namespace; ns != "" {
		return ns + "/" + name
	}
	return name
}

func gvkString(gvk metav1.GroupVersionKind) string {
	s := strings.Trim(gvk.Group+"/"+gvk.Version, "/")
	if gvk.Kind == "" {
		return "an object without a kind"
	}
	return s + " " + gvk.Kind
}
