package charts_test

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// grant is one verb on one resource, where a rendered Role or ClusterRole
// gives it: "ClusterRole" or "Role/<namespace>".
type grant struct{ where, group, resource, verb string }

// renderedGrants expands the rules of every rendered Role and ClusterRole
// into single grants. Rules that name resources (resourceNames) are left
// out: the tests ask what meshca may do to any object of a kind.
func renderedGrants(t *testing.T, objs []object) []grant {
	t.Helper()
	var out []grant
	for _, o := range objs {
		var rules []rbacv1.PolicyRule
		var where string
		switch o.Kind {
		case "ClusterRole":
			var r rbacv1.ClusterRole
			if err := yaml.UnmarshalStrict([]byte(o.Raw), &r); err != nil {
				t.Fatalf("decode ClusterRole: %v", err)
			}
			rules, where = r.Rules, "ClusterRole"
		case "Role":
			var r rbacv1.Role
			if err := yaml.UnmarshalStrict([]byte(o.Raw), &r); err != nil {
				t.Fatalf("decode Role: %v", err)
			}
			rules, where = r.Rules, "Role/"+r.Namespace
		default:
			continue
		}
		for _, rule := range rules {
			if len(rule.ResourceNames) > 0 {
				continue
			}
			for _, g := range rule.APIGroups {
				for _, res := range rule.Resources {
					for _, v := range rule.Verbs {
						out = append(out, grant{where, g, res, v})
					}
				}
			}
		}
	}
	return out
}

// verbs lists the verbs granted on group/resource at where, sorted.
func verbs(grants []grant, where, group, resource string) []string {
	var out []string
	for _, g := range grants {
		if g.where == where && g.group == group && g.resource == resource {
			out = append(out, g.verb)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestRenderedRestartOnRotate: rbac.restartOnRotate both ways, with and
// without rbac.namespaces. The patch on workloads is granted exactly where
// the value says, and meshca is told with --restart-on-rotate, so that it
// never tries a patch RBAC does not allow.
func TestRenderedRestartOnRotate(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		set []string
		// patchAt is where patch on every workload kind must be granted;
		// nowhere else may grant it.
		patchAt []string
		flag    string
	}{
		"default":                 {patchAt: []string{"ClusterRole"}, flag: "--restart-on-rotate=true"},
		"off":                     {set: []string{"rbac.restartOnRotate=false"}, flag: "--restart-on-rotate=false"},
		"namespaces":              {set: []string{"rbac.namespaces={team-a,team-b}"}, patchAt: []string{"Role/team-a", "Role/team-b"}, flag: "--restart-on-rotate=true"},
		"namespaces, off":         {set: []string{"rbac.namespaces={team-a,team-b}", "rbac.restartOnRotate=false"}, flag: "--restart-on-rotate=false"},
		"own RBAC, off":           {set: []string{"rbac.create=false", "rbac.restartOnRotate=false"}, flag: "--restart-on-rotate=false"},
		"own RBAC, on by default": {set: []string{"rbac.create=false"}, flag: "--restart-on-rotate=true"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var args []string
			for _, s := range c.set {
				args = append(args, "--set", s)
			}
			objs := splitManifests(t, render(t, goldenNamespace, args...))
			var d appsv1.Deployment
			decode(t, objs, "Deployment", &d)
			if got := d.Spec.Template.Spec.Containers[0].Args; !slices.Contains(got, c.flag) {
				t.Errorf("args %q lack %s", got, c.flag)
			}
			grants := renderedGrants(t, objs)
			for _, res := range []string{"deployments", "statefulsets", "daemonsets"} {
				var at []string
				for _, g := range grants {
					if g.group == "apps" && g.resource == res && (g.verb == "patch" || g.verb == "*") {
						at = append(at, g.where)
					}
				}
				slices.Sort(at)
				if !slices.Equal(at, c.patchAt) {
					t.Errorf("patch on %s granted at %q, want %q", res, at, c.patchAt)
				}
			}
		})
	}
}

// TestRenderedSecretGrants: the Secret and ConfigMap verbs are those meshca
// calls, as values.yaml and the README say: no patch, no deletecollection,
// no wildcard; in the release namespace only the two named Secrets beyond
// create.
func TestRenderedSecretGrants(t *testing.T) {
	t.Parallel()
	const own = "Role/" + goldenNamespace
	secretVerbs := []string{"create", "delete", "get", "list", "update", "watch"}
	configMapVerbs := []string{"create", "get", "list", "update", "watch"}
	for name, c := range map[string]struct {
		set   []string
		where []string
	}{
		"default":    {where: []string{"ClusterRole"}},
		"namespaces": {set: []string{"rbac.namespaces={team-a,team-b}"}, where: []string{"Role/team-a", "Role/team-b"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var args []string
			for _, s := range c.set {
				args = append(args, "--set", s)
			}
			objs := splitManifests(t, render(t, goldenNamespace, args...))
			grants := renderedGrants(t, objs)
			for _, where := range []string{"ClusterRole", own, "Role/team-a", "Role/team-b"} {
				wantSecrets, wantConfigMaps := []string(nil), []string(nil)
				switch {
				case slices.Contains(c.where, where):
					wantSecrets, wantConfigMaps = secretVerbs, configMapVerbs
				case where == own:
					wantSecrets = []string{"create"}
				}
				if got := verbs(grants, where, "", "secrets"); !slices.Equal(got, wantSecrets) {
					t.Errorf("%s grants %q on any Secret, want %q", where, got, wantSecrets)
				}
				if got := verbs(grants, where, "", "configmaps"); !slices.Equal(got, wantConfigMaps) {
					t.Errorf("%s grants %q on any ConfigMap, want %q", where, got, wantConfigMaps)
				}
			}
			// The named Secrets of the release namespace.
			var role rbacv1.Role
			for _, o := range objs {
				if o.Kind == "Role" && strings.Contains(o.Raw, "namespace: "+goldenNamespace) {
					if err := yaml.UnmarshalStrict([]byte(o.Raw), &role); err != nil {
						t.Fatal(err)
					}
				}
			}
			named := map[string][]string{}
			for _, r := range role.Rules {
				if slices.Contains(r.Resources, "secrets") {
					for _, n := range r.ResourceNames {
						named[n] = append(named[n], r.Verbs...)
					}
				}
			}
			for n, want := range map[string][]string{
				"meshca-ca":          {"get", "update"},
				"meshca-webhook-tls": {"delete", "get", "list", "update", "watch"},
			} {
				got := slices.Sorted(slices.Values(named[n]))
				if !slices.Equal(got, want) {
					t.Errorf("%s grants %q on Secret %s, want %q", own, got, n, want)
				}
			}
			if len(named) != 2 {
				t.Errorf("%s names Secrets %v, want meshca-ca and meshca-webhook-tls only", own, named)
			}
		})
	}
}
