package controller

import (
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// FuzzParseGatewayWish feeds arbitrary TLSContext objects (any JSON, since
// an old or foreign CRD may hold anything) to parseGatewaySpec: it must
// never panic, and what it accepts must be within its own limits.
func FuzzParseGatewayWish(f *testing.F) {
	f.Add(`{"metadata":{"namespace":"a","annotations":{"meshca.io/dns-names":"x.a.svc"}},"spec":{"hosts":["h.a.svc","*"],"secret":"s.b","ca_secret":"c"}}`)
	f.Add(`{"spec":{"secret":"s","secret_namespacing":false,"hosts":[1,null]}}`)
	f.Add(`{"spec":"x"}`)
	f.Add(`{"metadata":{"annotations":{"meshca.io/service-account":"../x","meshca.io/duration":"-1h"}},"spec":{"secret":"s"}}`)
	f.Fuzz(func(t *testing.T, js string) {
		obj := map[string]any{}
		if err := json.Unmarshal([]byte(js), &obj); err != nil {
			return
		}
		u := &unstructured.Unstructured{Object: obj}
		func() {
			// Unstructured's own accessors panic on some shapes; meshca
			// only ever gets objects the API server decoded, so skip those.
			defer func() { _ = recover() }()
			u.GetAnnotations()
			u.GetNamespace()
		}()
		if _, ok := obj["metadata"].(map[string]any); !ok && obj["metadata"] != nil {
			return
		}
		w, err := parseGatewaySpec(u, "ambassador", "")
		if err != nil {
			return
		}
		if w.Secret == nil && w.CASecret == nil {
			t.Fatal("accepted a wish with no Secret")
		}
		if len(w.DNSNames) > maxDNSNames {
			t.Fatalf("accepted %d names", len(w.DNSNames))
		}
		for _, n := range w.DNSNames {
			if n != strings.ToLower(n) || n == "" {
				t.Fatalf("name %q not normalised", n)
			}
		}
		if w.Duration < 0 || w.Duration > maxDuration || w.RenewBefore < 0 {
			t.Fatalf("duration %s renew-before %s out of range", w.Duration, w.RenewBefore)
		}
	})
}

// FuzzParseCertOptions: the certificate annotations never panic and never
// yield a negative or unbounded duration.
func FuzzParseCertOptions(f *testing.F) {
	f.Add("24h", "8h", "ecdsa-p256")
	f.Add("0", "-1h", "dsa")
	f.Add("1000000h", "abc", "")
	f.Fuzz(func(t *testing.T, dur, renew, alg string) {
		o, err := parseCertOptions(map[string]string{
			"meshca.io/duration": dur, "meshca.io/renew-before": renew, "meshca.io/key-algorithm": alg,
		}, "")
		if err != nil {
			return
		}
		if o.Duration <= 0 || o.Duration > maxDuration || o.RenewBefore <= 0 || o.RenewBefore > maxDuration {
			t.Fatalf("accepted %+v", o)
		}
	})
}
