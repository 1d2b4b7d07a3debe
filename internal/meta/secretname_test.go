package meta

import (
	"errors"
	"strings"
	"testing"
)

func TestWorkloadSecretName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 254)
	cases := map[string]struct {
		ann      map[string]string
		workload string
		want     string
		wantErr  string
	}{
		"default":                 {nil, "web", "web-meshca-tls", ""},
		"annotation":              {map[string]string{AnnotationSecretName: "web-certs"}, "web", "web-certs", ""},
		"trimmed":                 {map[string]string{AnnotationSecretName: "  web-certs\n"}, "web", "web-certs", ""},
		"blank means default":     {map[string]string{AnnotationSecretName: "  "}, "web", "web-meshca-tls", ""},
		"dotted stays a name":     {map[string]string{AnnotationSecretName: "x.other"}, "web", "x.other", ""},
		"generateName, annotated": {map[string]string{AnnotationSecretName: "web-certs"}, "", "web-certs", ""},
		"generateName":            {nil, "", "", "no name yet"},
		"slash":                   {map[string]string{AnnotationSecretName: "x/other"}, "web", "", `"x/other"`},
		"upper case":              {map[string]string{AnnotationSecretName: "Web"}, "web", "", "lowercase"},
		"inner space":             {map[string]string{AnnotationSecretName: "web certs"}, "web", "", AnnotationSecretName},
		"too long":                {map[string]string{AnnotationSecretName: long}, "web", "", "no more than 253"},
		"default too long":        {nil, long, "", "no more than 253"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := WorkloadSecretName(tc.ann, tc.workload)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrInvalidSecretName) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("WorkloadSecretName = %q, %v; want ErrInvalidSecretName mentioning %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("WorkloadSecretName = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
