package controller

import (
	"testing"
)

func TestDecideClaim(t *testing.T) {
	t.Parallel()
	tc := func(ns, name string, u use, satisfied bool) claimant {
		return claimant{Key: sourceKey(tlsContextKind, ns, name), Kind: tlsContextKind, Namespace: ns, Use: u, Satisfied: satisfied}
	}
	dep := func(ns, name string) claimant {
		return claimant{Key: sourceKey("Deployment", ns, name), Kind: "Deployment", Namespace: ns, Use: useCertificate}
	}
	live := func(key string, u use) holder {
		h := parseHolder(key)
		h.Live, h.Use = true, u
		return h
	}
	gone := parseHolder
	const ns = "b"
	for name, tt := range map[string]struct {
		c     claimant
		h     holder
		write bool
		// holder is the meshca.io/source after a write ("" means c's key).
		holder string
		rule   string
	}{
		"own":                             {c: tc(ns, "x", useCertificate, false), h: live("TLSContext/b/x", useCertificate), write: true, rule: ruleOwn},
		"no source is not free":           {c: tc(ns, "x", useCertificate, false), h: gone(""), rule: ruleNoSource},
		"unparsable source is not free":   {c: tc(ns, "x", useBundle, true), h: gone("edited"), rule: ruleNoSource},
		"lost source, created for it":     {c: claimant{Key: "TLSContext/b/x", Kind: tlsContextKind, Namespace: ns, CreatedFor: true}, h: gone("edited"), write: true, rule: ruleLostSource},
		"meshca's own, created for it?":   {c: claimant{Key: "TLSContext/b/x", Kind: tlsContextKind, Namespace: ns, CreatedFor: true}, h: gone("meshca/b/webhook"), rule: ruleMeshca},
		"meshca's own":                    {c: tc("meshca-system", "x", useCertificate, false), h: gone("meshca/meshca-system/webhook"), rule: ruleMeshca},
		"meshca's own, even as a bundle":  {c: tc("meshca-system", "x", useBundle, true), h: gone("meshca/meshca-system/webhook"), rule: ruleMeshca},
		"local holder kept, smaller name": {c: tc("a", "a", useCertificate, false), h: live("TLSContext/b/z", useCertificate), rule: ruleLocalKeeps},
		"local holder kept, gone":         {c: tc("a", "a", useCertificate, false), h: gone("TLSContext/b/z"), rule: ruleLocalKeeps},
		"local holder kept, bundle":       {c: tc("a", "a", useBundle, true), h: live("TLSContext/b/z", useBundle), rule: ruleLocalKeeps},
		"local workload kept":             {c: tc("a", "a", useCertificate, false), h: live("Deployment/b/z", useCertificate), rule: ruleLocalKeeps},
		"local wins over cross, larger":   {c: tc(ns, "zz", useCertificate, false), h: live("TLSContext/a/a", useCertificate), write: true, rule: ruleLocalWins},
		"local workload wins over cross":  {c: dep(ns, "web"), h: live("TLSContext/a/a", useCertificate), write: true, rule: ruleLocalWins},
		"TLSContext never takes workload": {c: tc(ns, "a", useCertificate, false), h: gone("Deployment/b/web"), rule: ruleKinds},
		"workload never takes TLSContext": {c: dep(ns, "web"), h: gone("TLSContext/b/gw"), rule: ruleKinds},
		"gone holder":                     {c: tc(ns, "z", useCertificate, false), h: gone("TLSContext/b/a"), write: true, rule: ruleGone},
		"gone holder, retype":             {c: tc(ns, "z", useBundle, false), h: gone("TLSContext/b/a"), write: true, rule: ruleGone},
		"gone workload":                   {c: dep(ns, "web"), h: gone("StatefulSet/b/web"), write: true, rule: ruleGone},
		"bundles are shared":              {c: tc(ns, "a", useBundle, false), h: live("TLSContext/b/z", useBundle), write: true, holder: "TLSContext/b/z", rule: ruleShareBundle},
		"never retyped, smaller name":     {c: tc(ns, "a", useBundle, false), h: live("TLSContext/b/z", useCertificate), rule: ruleUses},
		"never retyped, bundle to cert":   {c: tc(ns, "a", useCertificate, false), h: live("TLSContext/b/z", useBundle), rule: ruleUses},
		"satisfied refresh keeps holder":  {c: tc(ns, "z", useCertificate, true), h: live("TLSContext/b/a", useCertificate), write: true, holder: "TLSContext/b/a", rule: ruleSatisfied},
		"smaller name wins":               {c: tc(ns, "a", useCertificate, false), h: live("TLSContext/b/z", useCertificate), write: true, rule: ruleSmaller},
		"larger name loses":               {c: tc(ns, "z", useCertificate, false), h: live("TLSContext/b/a", useCertificate), rule: ruleSmaller},
		"cross against cross: smaller":    {c: tc("a", "x", useCertificate, false), h: live("TLSContext/c/x", useCertificate), write: true, rule: ruleSmaller},
		"cross against cross: larger":     {c: tc("c", "x", useCertificate, false), h: live("TLSContext/a/x", useCertificate), rule: ruleSmaller},
		"workloads never share":           {c: claimant{Key: "StatefulSet/b/twin", Kind: "StatefulSet", Namespace: ns, Satisfied: true}, h: live("Deployment/b/twin", useCertificate), rule: ruleFirst},
		"first workload keeps it":         {c: dep(ns, "a"), h: live("StatefulSet/b/z", useCertificate), rule: ruleFirst},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := decideClaim(ns, tt.c, tt.h)
			want := claimVerdict{Write: tt.write, Holder: tt.h.Key, Rule: tt.rule}
			if tt.write {
				want.Holder = tt.c.Key
				if tt.holder != "" {
					want.Holder = tt.holder
				}
			}
			if got != want {
				t.Errorf("decideClaim(%q, %+v, %+v) = %+v, want %+v", ns, tt.c, tt.h, got, want)
			}
		})
	}
}

// TestDecideClaimSettles checks, for every pair of claimants over every
// kind of holder, that the rules never let two live sources each take the
// Secret from the other: the source of a write loop.
func TestDecideClaimSettles(t *testing.T) {
	t.Parallel()
	var cs []claimant
	for _, ns := range []string{"a", "b", "c"} {
		for _, name := range []string{"x", "y"} {
			for _, u := range []use{useCertificate, useBundle} {
				cs = append(cs, claimant{Key: sourceKey(tlsContextKind, ns, name), Kind: tlsContextKind, Namespace: ns, Use: u})
			}
			cs = append(cs, claimant{Key: sourceKey("Deployment", ns, name), Kind: "Deployment", Namespace: ns, Use: useCertificate})
		}
	}
	holds := func(c claimant) holder {
		h := parseHolder(c.Key)
		h.Live, h.Use = true, c.Use
		return h
	}
	for _, secretNS := range []string{"a", "b"} {
		for _, p := range cs {
			for _, q := range cs {
				if p.Key == q.Key {
					continue
				}
				pTakes := decideClaim(secretNS, p, holds(q))
				qTakes := decideClaim(secretNS, q, holds(p))
				if pTakes.Write && pTakes.Holder == p.Key && qTakes.Write && qTakes.Holder == q.Key {
					t.Errorf("Secret in %s: %s (%v) and %s (%v) each take it from the other (%s / %s)",
						secretNS, p.Key, p.Use, q.Key, q.Use, pTakes.Rule, qTakes.Rule)
				}
			}
		}
	}
}
