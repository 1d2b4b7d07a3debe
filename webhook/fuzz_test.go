package webhook

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
)

var metav1TypeMetaReview = metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}

// FuzzServeHTTP feeds arbitrary bodies to the handler. The seed corpus in
// testdata/fuzz/FuzzServeHTTP holds the AdmissionReviews of admitCases
// (rewritten by TestSeedCorpus -update) and reviews the real API server sent
// in TestAPIServer. Whatever the body, the handler must answer with a status
// it documents and, for 200, a well-formed AdmissionReview for the request.
func FuzzServeHTTP(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"CREATE","object":{"metadata":{"name":"a","annotations":{"meshca.io/certificate":"true"}},"spec":{"template":{"spec":{"containers":[{"name":"c"}]}}}}}}`))
	s, err := New(Config{Certificates: staticCert{}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", Path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if !slices.Contains([]int{200, 400, 413}, w.Code) {
			t.Fatalf("status %d", w.Code)
		}
		if w.Code != 200 {
			return
		}
		var in, out admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("200 for a body that does not decode: %v", err)
		}
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("200 without a response: %v", err)
		}
		if out.Response.UID != in.Request.UID {
			t.Fatalf("UID %q, want %q", out.Response.UID, in.Request.UID)
		}
		if !out.Response.Allowed && (out.Response.Result == nil || out.Response.Result.Message == "") {
			t.Fatal("denied without a message")
		}
	})
}

// FuzzMutate fuzzes the object inside a well-formed request: whatever it
// is, a patch must apply and, applied, be admitted unchanged.
func FuzzMutate(f *testing.F) {
	for _, tc := range admitCases() {
		f.Add(request(f, tc.op, tc.obj).Object.Raw)
	}
	f.Fuzz(func(t *testing.T, obj []byte) {
		// The API server sends its own encoding of the object it decoded,
		// never the client's bytes: no duplicate keys, nulls in lists or
		// unknown fields. Do the same.
		var d appsv1.Deployment
		if kjson.UnmarshalCaseSensitivePreserveInts(obj, &d) != nil {
			return
		}
		obj, err := json.Marshal(&d)
		if err != nil {
			t.Fatal(err)
		}
		req := &admissionv1.AdmissionRequest{
			UID:       "u",
			Kind:      metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
			Operation: admissionv1.Create,
			Name:      "web",
		}
		req.Object.Raw = obj
		resp, _ := admit(req)
		if !resp.Allowed && (resp.Result == nil || resp.Result.Message == "") {
			t.Fatal("denied without a message")
		}
		checkIdempotent(t, req, resp)
	})
}

// checkIdempotent applies a response's patch and admits the result again:
// the second answer must be allowed without a patch.
func checkIdempotent(t *testing.T, req *admissionv1.AdmissionRequest, resp *admissionv1.AdmissionResponse) {
	t.Helper()
	if resp.Patch == nil {
		return
	}
	p, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("decode patch: %v", err)
	}
	mutated, err := p.Apply(req.Object.Raw)
	if err != nil {
		t.Fatalf("patch %s does not apply: %v", resp.Patch, err)
	}
	again := *req
	again.Object.Raw = mutated
	if resp2, result := admit(&again); resp2.Patch != nil || !resp2.Allowed {
		t.Fatalf("re-admitting the output: %s, patch %s, message %v", result, resp2.Patch, resp2.Result)
	}
}

// TestSeedCorpus keeps the fuzz seed corpus in step with admitCases: run
// with -update to rewrite it.
func TestSeedCorpus(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("testdata", "fuzz", "FuzzServeHTTP")
	for name, tc := range admitCases() {
		body := reviewBody(t, request(t, tc.op, tc.obj))
		path := filepath.Join(dir, "admit-"+name)
		if *update {
			writeCorpusFile(t, path, body)
			continue
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("seed %s missing (run with -update): %v", path, err)
		}
	}
}

func writeCorpusFile(t testing.TB, path string, body []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	data := "go test fuzz v1\n[]byte(" + strconv.Quote(string(body)) + ")\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkServeHTTP(b *testing.B) {
	s, err := New(Config{Certificates: staticCert{}})
	if err != nil {
		b.Fatal(err)
	}
	tmpl := podTemplate("app", "proxy")
	tmpl.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	body := reviewBody(b, request(b, admissionv1.Create, deployment("web", bothAnn, tmpl)))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", Path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
	}
}
