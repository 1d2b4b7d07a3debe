package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/meshca/meshca/rotator"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/meshca/meshca/controller"
)

// serveOptions are the daemon's settings; DESIGN.md's "The daemon" table is
// their contract. Every flag is also read from MESHCA_<FLAG> (see bindEnv).
type serveOptions struct {
	kubeconfig           string
	namespace            string
	trustDomain          string
	clusterDomain        string
	leafDuration         time.Duration
	caPublishGrace       time.Duration
	keyAlgorithm         string
	auditSchedule        string
	maxIssuanceRate      float64
	kubeAPIQPS           float32
	kubeAPIBurst         int
	eventQPS             float64
	memoryLimit          string
	tlsContextSelector   string
	gatewayServiceAcct   string
	allowedDNSSuffixes   []string
	allowWildcards       bool
	allowIPSANs          bool
	allowCrossNamespace  bool
	bundleNamespaceSel   string
	secretCleanup        string
	restartOnRotate      bool
	webhookPort          int
	webhookConfiguration string
	webhookNames         []string
	webhookSecret        string
	watchNamespaces      []string
	metricsAddress       string
	healthAddress        string
	leaderElect          bool
	leaseDuration        time.Duration
	renewDeadline        time.Duration
	retryPeriod          time.Duration
	allowNewCA           bool
	logFormat            string
	logLevel             string
	// issuerBackend and stepca choose what signs TLSContext and workload
	// certificates (backend.go).
	issuerBackend string
	stepca        stepcaOptions
}

func (o *serveOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the API server to use; empty means the in-cluster config")
	fs.StringVar(&o.namespace, "namespace", "", "namespace of the CA Secret, the leader Lease and the webhook Secret; default: the pod's namespace, else meshca-system")
	fs.StringVar(&o.trustDomain, "trust-domain", "cluster.local", "SPIFFE trust domain of issued identities (spiffe://<trust-domain>/ns/<ns>/sa/<sa>)")
	fs.StringVar(&o.clusterDomain, "cluster-domain", "cluster.local", "DNS suffix of Services (<svc>.<ns>.svc.<cluster-domain>)")
	fs.DurationVar(&o.leafDuration, "leaf-duration", 24*time.Hour, "default lifetime of issued certificates")
	fs.DurationVar(&o.caPublishGrace, "ca-publish-grace", rotator.DefaultCAPublishGrace, "least time a next CA is in the trust bundles this leader published before it starts signing, even when its activation time has passed (a leader that died before publishing it); 0: none")
	fs.StringVar(&o.keyAlgorithm, "key-algorithm", "ecdsa-p256", "default key algorithm of issued certificates: ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096 or ed25519")
	fs.StringVar(&o.auditSchedule, "audit-schedule", "@every 5m", "cron spec of the sweep that re-checks every managed Secret and repairs drift")
	fs.Float64Var(&o.maxIssuanceRate, "max-issuance-rate", 50, "certificates signed per second at most (a burst of the same size is allowed)")
	fs.Float32Var(&o.kubeAPIQPS, "kube-api-qps", 100, "queries per second to the API server at most")
	fs.IntVar(&o.kubeAPIBurst, "kube-api-burst", 200, "burst of queries to the API server above --kube-api-qps")
	fs.Float64Var(&o.eventQPS, "event-qps", 20, "Normal Events (Issued, Renewed, ...) written per second at most; during a burst they wait behind the certificate writes (Warning Events are not held back)")
	fs.StringVar(&o.memoryLimit, "memory-limit", "", "the container's memory limit (a quantity such as 256Mi, or bytes; the chart passes resources.limits.memory): Go's soft memory limit becomes 90% of it unless GOMEMLIMIT is set; empty: none")
	fs.StringVar(&o.tlsContextSelector, "tlscontext-selector", "", "label selector of TLSContexts managed without the meshca.io/issue annotation; empty: none")
	fs.StringVar(&o.gatewayServiceAcct, "gateway-service-account", "ambassador", "service account in a gateway's SPIFFE ID when its TLSContext names none (meshca.io/service-account)")
	fs.StringSliceVar(&o.allowedDNSSuffixes, "allowed-dns-suffixes", nil, "DNS suffixes any namespace may claim, comma-separated (beyond its own <ns>.svc names)")
	fs.BoolVar(&o.allowWildcards, "allow-wildcards", false, "allow wildcard DNS names in issued certificates")
	fs.BoolVar(&o.allowIPSANs, "allow-ip-sans", false, "allow IP address SANs in issued certificates")
	fs.BoolVar(&o.allowCrossNamespace, "allow-cross-namespace-secrets", false, "write Secrets in other namespaces (name.namespace) without the target's meshca.io/accept-secrets-from label")
	fs.StringVar(&o.bundleNamespaceSel, "bundle-namespace-selector", "", "label selector of namespaces that get the meshca-trust-bundle ConfigMap; empty: all")
	fs.StringVar(&o.secretCleanup, "secret-cleanup", "keep", "what happens to Secrets meshca wrote when their source goes away: keep or delete")
	fs.BoolVar(&o.restartOnRotate, "restart-on-rotate", true, "honour meshca.io/restart-on-rotate: after a renewal, patch the workload's pod template so its pods roll (needs patch on Deployments, StatefulSets and DaemonSets); false: never patch, record a Warning Event RestartDisabled on each renewal instead. Workloads in kube-system and --namespace are never patched")
	fs.IntVar(&o.webhookPort, "webhook-port", 9443, "HTTPS port of the admission webhook (POST /mutate)")
	fs.StringVar(&o.webhookConfiguration, "webhook-configuration", "meshca", "name of the MutatingWebhookConfiguration whose caBundle meshca maintains")
	fs.StringSliceVar(&o.webhookNames, "webhook-names", nil, "DNS names or IPs in the webhook's serving certificate; default meshca.<namespace>.svc and meshca.<namespace>.svc.<cluster-domain> (use 127.0.0.1 out of cluster)")
	fs.StringVar(&o.webhookSecret, "webhook-secret", "meshca-webhook-tls", "Secret in --namespace that holds the webhook's serving certificate (issued by meshca's CA)")
	fs.StringSliceVar(&o.watchNamespaces, "watch-namespaces", nil, "namespaces whose TLSContexts, workloads, Secrets and ConfigMaps meshca watches and writes, comma-separated; default all (the chart's rbac.namespaces sets it)")
	fs.StringVar(&o.metricsAddress, "metrics-address", ":8080", "address of the Prometheus /metrics endpoint; 0 disables it")
	fs.StringVar(&o.healthAddress, "health-address", ":8081", "address of /healthz and /readyz; 0 disables them")
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "run controllers only on the holder of the meshca Lease; the webhook serves on every replica")
	fs.DurationVar(&o.leaseDuration, "leader-election-lease-duration", 15*time.Second, "how long a Lease holder that stops renewing keeps the Lease: a leader that dies is replaced between this minus one and this plus 4.4 retry periods later")
	fs.DurationVar(&o.renewDeadline, "leader-election-renew-deadline", 10*time.Second, "how long the leader keeps retrying to renew the Lease before it gives up leading and exits; must be less than the lease duration")
	fs.DurationVar(&o.retryPeriod, "leader-election-retry-period", 2*time.Second, "how often replicas try to acquire or renew the Lease")
	fs.BoolVar(&o.allowNewCA, "allow-new-ca", false, "create a new CA even though Secrets issued by a previous one (labelled app.kubernetes.io/managed-by=meshca) exist; without it meshca refuses to start when the CA Secret is gone but its certificates are not")
	fs.StringVar(&o.logFormat, "log-format", "auto", "log format: json, text, or auto (text on a terminal, json otherwise)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	o.addIssuerFlags(fs)
}

// validate checks what flag parsing alone cannot.
func (o *serveOptions) validate() error {
	var errs []error
	if o.caPublishGrace < 0 {
		errs = append(errs, fmt.Errorf("--ca-publish-grace must not be negative, got %s", o.caPublishGrace))
	}
	if o.leafDuration <= 0 {
		errs = append(errs, fmt.Errorf("--leaf-duration must be positive, got %s", o.leafDuration))
	}
	if o.maxIssuanceRate <= 0 {
		errs = append(errs, fmt.Errorf("--max-issuance-rate must be positive, got %v", o.maxIssuanceRate))
	}
	if o.kubeAPIQPS <= 0 || o.kubeAPIBurst <= 0 {
		errs = append(errs, fmt.Errorf("--kube-api-qps and --kube-api-burst must be positive"))
	}
	if o.eventQPS <= 0 {
		errs = append(errs, fmt.Errorf("--event-qps must be positive, got %v", o.eventQPS))
	}
	if _, err := parseMemoryLimit(o.memoryLimit); err != nil {
		errs = append(errs, err)
	}
	if o.leaseDuration <= 0 || o.renewDeadline <= 0 || o.retryPeriod <= 0 {
		errs = append(errs, fmt.Errorf("--leader-election-lease-duration, --leader-election-renew-deadline and --leader-election-retry-period must be positive"))
	} else if o.renewDeadline >= o.leaseDuration || float64(o.renewDeadline) <= 1.2*float64(o.retryPeriod) {
		// client-go's rule: the renew deadline must leave room for a
		// jittered retry (factor 1.2) and end before the lease does.
		errs = append(errs, fmt.Errorf("leader election needs 1.2 × retry period (%s) < renew deadline (%s) < lease duration (%s)", o.retryPeriod, o.renewDeadline, o.leaseDuration))
	}
	if o.secretCleanup != "keep" && o.secretCleanup != "delete" {
		errs = append(errs, fmt.Errorf("--secret-cleanup must be keep or delete, got %q", o.secretCleanup))
	}
	if o.webhookPort < 1 || o.webhookPort > 65535 {
		errs = append(errs, fmt.Errorf("--webhook-port must be 1-65535, got %d", o.webhookPort))
	}
	for _, sel := range []struct{ flag, value string }{{"--tlscontext-selector", o.tlsContextSelector}, {"--bundle-namespace-selector", o.bundleNamespaceSel}} {
		if _, err := labels.Parse(sel.value); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", sel.flag, err))
		}
	}
	switch o.logFormat {
	case "auto", "json", "text":
	default:
		errs = append(errs, fmt.Errorf("--log-format must be auto, json or text, got %q", o.logFormat))
	}
	if _, err := parseLevel(o.logLevel); err != nil {
		errs = append(errs, err)
	}
	if err := o.validateIssuer(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// complete fills defaults that depend on other settings or the environment.
func (o *serveOptions) complete() {
	if o.namespace == "" {
		o.namespace = podNamespace()
	}
	if len(o.webhookNames) == 0 {
		o.webhookNames = []string{
			"meshca." + o.namespace + ".svc",
			"meshca." + o.namespace + ".svc." + o.clusterDomain,
		}
	}
}

// podNamespace is the namespace of the pod meshca runs in, else meshca-system.
func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return "meshca-system"
}

func newServeCommand() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: CA, controllers and rotator (on the leader), webhook, metrics and health",
		Long: `Run the meshca daemon. Controllers and the rotator run on the replica holding
the Lease "meshca" in --namespace; the admission webhook, /metrics, /healthz and
/readyz serve on every replica. SIGTERM or SIGINT shuts down cleanly and
releases the Lease, so another replica takes over at its next try (within 2.2 x
--leader-election-retry-period). A leader that dies without releasing it is
replaced between lease duration - retry period and lease duration + 4.4 x retry
period later (13s to 23.8s at the defaults; docs/reference.md, "Leader election
and takeover"). The leader renews every --leader-election-retry-period and
stops leading (and exits) when it cannot renew for
--leader-election-renew-deadline. The gauge
meshca_leader on /metrics is 1 on the leader and 0 elsewhere.

Every flag can also be set by an environment variable: MESHCA_ followed by the
flag name in upper case with dashes as underscores (--leaf-duration is
MESHCA_LEAF_DURATION). A flag given on the command line wins.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags(), os.LookupEnv); err != nil {
				return err
			}
			if err := o.validate(); err != nil {
				return err
			}
			o.complete()
			return runServe(cmd.Context(), o)
		},
	}
	o.addFlags(cmd.Flags())
	annotateEnv(cmd.Flags())
	return cmd
}

// envName is the environment variable that sets flag name.
func envName(name string) string {
	return "MESHCA_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// annotateEnv appends each flag's environment variable to its help text.
func annotateEnv(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		f.Usage += " (env " + envName(f.Name) + ")"
	})
}

// bindEnv sets every flag not given on the command line from its
// environment variable, if present.
func bindEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		v, ok := lookup(envName(f.Name))
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
		}
	})
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level must be debug, info, warn or error, got %q", s)
	}
	return l, nil
}

// newLogger returns the structured logger of the whole daemon: logr, the
// API controller-runtime uses, writing through a slog handler that prints
// JSON in a cluster and text on a terminal.
func newLogger(format, level string) logr.Logger {
	lvl, _ := parseLevel(level)
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "auto" {
		format = "json"
		if term.IsTerminal(int(os.Stderr.Fd())) {
			format = "text"
		}
	}
	if format == "text" {
		return logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, opts))
	}
	return logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, opts))
}

// restConfig loads --kubeconfig, or the in-cluster config when it is empty.
func restConfig(path string, qps float32, burst int) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if path == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", path)
	}
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %q: %w", path, err)
	}
	cfg.QPS, cfg.Burst = qps, burst
	cfg.UserAgent = "meshca/" + version
	return cfg, nil
}

// bundleNamespaces selects the namespaces that get the trust bundle:
// --bundle-namespace-selector, narrowed to --watch-namespaces when that is
// set. Outside those namespaces meshca has no cache and, with the chart's
// rbac.namespaces, no right to write ConfigMaps.
func bundleNamespaces(o *serveOptions) (labels.Selector, error) {
	sel, err := labels.Parse(o.bundleNamespaceSel)
	if err != nil || len(o.watchNamespaces) == 0 {
		return sel, err
	}
	req, err := labels.NewRequirement(corev1.LabelMetadataName, selection.In, o.watchNamespaces)
	if err != nil {
		return nil, fmt.Errorf("--watch-namespaces: %w", err)
	}
	return sel.Add(*req), nil
}

func runServe(ctx context.Context, o *serveOptions) error {
	log := newLogger(o.logFormat, o.logLevel)
	ctrl.SetLogger(log)

	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signalContext(ctx)
	defer stop()

	// validate has parsed the limit already.
	limit, _ := parseMemoryLimit(o.memoryLimit)
	mem := memoryFor(limit, os.LookupEnv)
	if mem.gcPercent != 0 {
		debug.SetGCPercent(mem.gcPercent)
	}
	if mem.softLimit != 0 {
		debug.SetMemoryLimit(mem.softLimit)
	}
	log.Info("memory settings", "gcPercent", currentGCPercent(), "softLimitBytes", debug.SetMemoryLimit(-1))

	cfg, err := restConfig(o.kubeconfig, o.kubeAPIQPS, o.kubeAPIBurst)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Logger:                        log,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              "meshca",
		LeaderElectionNamespace:       o.namespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &o.leaseDuration,
		RenewDeadline:                 &o.renewDeadline,
		RetryPeriod:                   &o.retryPeriod,
		HealthProbeBindAddress:        o.healthAddress,
		Metrics:                       metricsserver.Options{BindAddress: o.metricsAddress},
		Cache:                         controller.CacheOptions(o.watchNamespaces),
		Client:                        controller.ClientOptions(),
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	leader, err := leaderGauge(ctrlmetrics.Registry)
	if err != nil {
		return fmt.Errorf("register leader metric: %w", err)
	}
	// A plain runnable runs only while this replica holds the Lease.
	if err := mgr.Add(manager.RunnableFunc(leading(leader))); err != nil {
		return err
	}
	if err := setupControllers(ctx, mgr, o, log); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	log.Info("starting meshca", "version", version, "namespace", o.namespace,
		"trustDomain", o.trustDomain, "leaderElect", o.leaderElect, "issuer", o.issuerBackend)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	log.Info("meshca stopped")
	return nil
}
