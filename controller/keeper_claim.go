package controller

import (
	"context"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/types"
)

// Who may write a managed Secret that already exists is decided here, in
// one place, for every path that writes one (a TLSContext's spec.secret and
// spec.ca_secret, a workload's certificate). The rules are a pure function
// of the Secret's recorded holder (meshca.io/source) and of the source that
// asks, so they are tested as a table; the reconcilers only look up whether
// the holder still exists and still wants the Secret.

// ReservedSecrets are the Secrets meshca keeps for itself: the CA Secret and
// the webhook's serving Secret in meshca's namespace. No TLSContext or
// workload may name one, whatever the flags, labels or namespaces say: a
// reference to one is refused before anything is read or written.
type ReservedSecrets []types.NamespacedName

// has reports whether ref is one of meshca's own Secrets.
func (r ReservedSecrets) has(ref secretRef) bool {
	return slices.Contains(r, ref.key())
}

// errReserved refuses a reference to one of meshca's own Secrets.
type errReserved struct{ ref secretRef }

func (e *errReserved) Error() string {
	return fmt.Sprintf("Secret %s is one of meshca's own (its CA or webhook Secret): no TLSContext or workload may name it", e.ref)
}

// use is how a source uses a Secret: the two uses need different Secret
// types, so a Secret is never shared between them.
type use int

const (
	// useCertificate: a kubernetes.io/tls Secret with the source's own
	// certificate and key (TLSContext spec.secret, a workload).
	useCertificate use = iota
	// useBundle: an Opaque Secret with the trust bundle (TLSContext
	// spec.ca_secret). Every source wants the same bundle, so sources
	// share such a Secret.
	useBundle
)

// holderKindMeshca is the source kind of the Secrets meshca keeps for
// itself (meshca.io/source: meshca/<namespace>/<what>).
const holderKindMeshca = "meshca"

// claimant is the source that asks to write a Secret.
type claimant struct {
	// Key is its meshca.io/source value: kind/namespace/name.
	Key             string
	Kind, Namespace string
	Use             use
	// Satisfied is true when the Secret already holds what the claimant
	// wants (a certificate it would not reissue, or the current bundle).
	Satisfied bool
	// CreatedFor is true when there is evidence that meshca created the
	// Secret for the claimant (see certKeeper.createdFor): it may then
	// take it back after its meshca.io/source was lost or edited.
	CreatedFor bool
}

// holder is what the claim rules know of a Secret's recorded holder.
type holder struct {
	// Key is the Secret's meshca.io/source; Kind, Namespace and Name are
	// parsed from it and empty when it does not parse.
	Key                   string
	Kind, Namespace, Name string
	// Live is true when the holder exists, is managed and still names
	// the Secret; Use is then how it uses it.
	Live bool
	Use  use
}

// holderLookup tells the claim rules whether a Secret's recorded holder is
// live: it exists, is managed and still names the Secret at ref, and as
// what (holder.Live, holder.Use). Each source kind has one, built from the
// reconciler's reader and configuration when the keeper is: the keeper asks
// it, the reconciler is never called back. A lookup fills in only holders
// of its own kind and returns the others as given; decideClaim reads Live
// only when the claimant and the holder are of the same kind.
type holderLookup interface {
	lookup(ctx context.Context, h holder, ref secretRef) (holder, error)
}

// parseHolder fills the parsed fields of a holder from its key.
func parseHolder(key string) holder {
	h := holder{Key: key}
	h.Kind, h.Namespace, h.Name, _ = parseSourceKey(key)
	return h
}

// claimVerdict is the decision on one claim.
type claimVerdict struct {
	// Write is true when the claimant may write the Secret.
	Write bool
	// Holder is the meshca.io/source the Secret carries after the write:
	// the claimant's key when it takes the Secret, the holder's when it
	// only refreshes a Secret it shares.
	Holder string
	// Rule names the rule that decided, for Events.
	Rule string
}

// The rules, as Events name them.
const (
	ruleOwn         = "the claimant holds it"
	ruleNoSource    = "a managed Secret without a meshca.io/source is not free: meshca writes only Secrets it created for the source that names them"
	ruleLostSource  = "meshca created it for the claimant and its meshca.io/source was lost or edited"
	ruleMeshca      = "meshca's own Secrets are never written for a source"
	ruleLocalKeeps  = "a source in the Secret's own namespace keeps it: consent to write there is not consent to evict"
	ruleLocalWins   = "a source in the Secret's own namespace wins over one in another namespace"
	ruleKinds       = "a TLSContext and a workload never take each other's Secret"
	ruleGone        = "the holder is gone or no longer names it"
	ruleShareBundle = "CA bundle Secrets are shared: every source wants the same bundle"
	ruleSatisfied   = "it already holds what the claimant wants"
	ruleUses        = "a Secret is never retyped for another source while its holder uses it"
	ruleSmaller     = "the smaller name wins"
	ruleFirst       = "the first holder keeps it"
)

// decideClaim decides whether c may write an existing managed Secret in
// namespace secretNS whose recorded holder is h. The rules, in order:
//
//  1. a claimant may write what it holds;
//  2. a Secret with no holder (or one that does not parse) is nobody's to
//     take, except the source meshca created it for (CreatedFor): meshca
//     creates every Secret it may write with a holder;
//  3. meshca's own Secrets are never taken;
//  4. a source in the Secret's namespace keeps it against one from
//     another namespace, alive or not, and takes it from one;
//  5. a TLSContext never takes a workload's Secret and the reverse (the
//     workload's is owned by the workload and collected with it);
//  6. a Secret whose holder is gone or no longer names it is free;
//  7. sources that both use it as a CA bundle share it (holder kept);
//  8. a Secret is never retyped while its holder uses it the other way;
//  9. between workloads the first holder keeps it (a workload owns its
//     Secret, so two never share one);
//  10. a Secret that already holds what a TLSContext wants is refreshed
//     for it as is (holder kept);
//  11. otherwise between TLSContexts the smaller name wins, so two that
//     name one Secret settle without a write loop.
func decideClaim(secretNS string, c claimant, h holder) claimVerdict {
	take := claimVerdict{Write: true, Holder: c.Key}
	keep := func(rule string) claimVerdict { return claimVerdict{Holder: h.Key, Rule: rule} }
	switch {
	case h.Key == c.Key:
		take.Rule = ruleOwn
		return take
	case h.Kind == "" && c.CreatedFor:
		take.Rule = ruleLostSource
		return take
	case h.Kind == "":
		return keep(ruleNoSource)
	case h.Kind == holderKindMeshca:
		return keep(ruleMeshca)
	case h.Namespace == secretNS && c.Namespace != secretNS:
		return keep(ruleLocalKeeps)
	case c.Namespace == secretNS && h.Namespace != secretNS:
		take.Rule = ruleLocalWins
		return take
	case (h.Kind == tlsContextKind) != (c.Kind == tlsContextKind):
		return keep(ruleKinds)
	case !h.Live:
		take.Rule = ruleGone
		return take
	case h.Use == useBundle && c.Use == useBundle:
		return claimVerdict{Write: true, Holder: h.Key, Rule: ruleShareBundle}
	case h.Use != c.Use:
		return keep(ruleUses)
	case c.Kind != tlsContextKind:
		// A workload's Secret is owned by it (collected with it), so
		// workloads never share one.
		return keep(ruleFirst)
	case c.Satisfied:
		return claimVerdict{Write: true, Holder: h.Key, Rule: ruleSatisfied}
	case c.Key < h.Key:
		take.Rule = ruleSmaller
		return take
	}
	return keep(ruleSmaller)
}

// tlsContextKind is the source kind of TLSContexts in meshca.io/source.
const tlsContextKind = "TLSContext"
