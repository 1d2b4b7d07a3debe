package main

import "testing"

// TestMemoryFor: GOGC and GOMEMLIMIT from the environment win; otherwise
// GC percent 50 and 90% of the container limit.
func TestMemoryFor(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		limit int64
		env   map[string]string
		want  memorySettings
	}{
		"nothing set":              {0, nil, memorySettings{gcPercent: 50}},
		"container limit":          {256 << 20, nil, memorySettings{gcPercent: 50, softLimit: 241591910}},
		"GOGC set":                 {256 << 20, map[string]string{"GOGC": "100"}, memorySettings{softLimit: 241591910}},
		"GOMEMLIMIT set":           {256 << 20, map[string]string{"GOMEMLIMIT": "100MiB"}, memorySettings{gcPercent: 50}},
		"both set":                 {256 << 20, map[string]string{"GOGC": "off", "GOMEMLIMIT": "100MiB"}, memorySettings{}},
		"GOMEMLIMIT without limit": {0, map[string]string{"GOMEMLIMIT": "100MiB"}, memorySettings{gcPercent: 50}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := memoryFor(tc.limit, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if got != tc.want {
				t.Errorf("memoryFor(%d, %v) = %+v, want %+v", tc.limit, tc.env, got, tc.want)
			}
		})
	}
}

func TestParseMemoryLimit(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		in      string
		want    int64
		wantErr bool
	}{
		"empty":              {"", 0, false},
		"quantity":           {"256Mi", 256 << 20, false},
		"downward API bytes": {"268435456", 256 << 20, false},
		"decimal suffix":     {"1G", 1_000_000_000, false},
		"garbage":            {"lots", 0, true},
		"zero":               {"0", 0, true},
		"negative":           {"-1Mi", 0, true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := parseMemoryLimit(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseMemoryLimit(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}
