// Command meshca-bench is meshca's load harness. It starts its own control
// plane (internal/testenv: a real kube-apiserver and etcd), runs the meshca
// binary (and optionally cert-manager's controller) as subprocesses against
// it, and measures time to ready, the API write floor, renewal at scale,
// webhook latency and peak RSS. It writes every run's values to a JSON file
// and prints one summary table; `make bench` runs it after the Go
// benchmarks, whose output it folds into the same table (-gobench).
//
// It only ever talks to 127.0.0.1 and bounds every phase in count and time.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshca/meshca/internal/testenv"
)

type options struct {
	meshca       string
	certManager  string // folder from hack/build-certmanager.sh; "" skips the side-by-side
	gobench      string
	out          string
	workDir      string
	readyN       []int
	readyRuns    int
	floorRuns    int
	memUnrelated int
	memRuns      int
	// memFreshMax is the largest renewal N whose memory is also measured
	// on a fresh start with every Secret valid (minutes at 10,000).
	memFreshMax int
	renewN      []int
	renewRatedN int // largest N renewed at the default --max-issuance-rate
	webhookRate int
	webhookSecs int
	webhookRuns int
	// webhookCompare is a second meshca binary measured in the webhook
	// phase's same runs (a before/after comparison); "" measures one.
	webhookCompare string
	cmN            int
	cmLiftedRuns   int
	cmTimeout      time.Duration
	phases         string
}

// bench holds the control plane and the harness's clients.
type bench struct {
	o   options
	env *testenv.Env
	cfg *rest.Config
	cs  kubernetes.Interface
	res *Results
	// lastPhase is set while the run's last phase runs: what it creates
	// need not be deleted.
	lastPhase bool
}

func main() {
	var o options
	var readyN, renewN string
	flag.StringVar(&o.meshca, "meshca", "bin/meshca", "meshca binary under test")
	flag.StringVar(&o.certManager, "cert-manager", "", "cert-manager folder (controller, crds/) from hack/build-certmanager.sh; empty skips the side-by-side")
	flag.StringVar(&o.gobench, "gobench", "", "output of go test -bench -count N to fold into the table")
	flag.StringVar(&o.out, "out", "bench/out/results.json", "JSON results file")
	flag.StringVar(&o.workDir, "work", "bench/out", "folder for daemon logs")
	flag.StringVar(&readyN, "ready-n", "100,1000", "TLSContext counts for time to ready")
	flag.IntVar(&o.readyRuns, "ready-runs", 3, "runs per time-to-ready size (each paired with an API write floor run)")
	flag.IntVar(&o.memUnrelated, "mem-unrelated", 20000, "unrelated Secrets for the memory comparison")
	flag.IntVar(&o.memRuns, "mem-runs", 3, "meshca starts per memory configuration")
	flag.IntVar(&o.memFreshMax, "mem-fresh-max", 1000, "largest renewal size whose memory is also measured on a fresh start (larger ones report the renewal run's peak)")
	flag.StringVar(&renewN, "renew-n", "1000,10000", "managed certificate counts for renewal at scale")
	flag.IntVar(&o.renewRatedN, "renew-rated-max", 1000, "largest renewal size also run at the default --max-issuance-rate")
	flag.IntVar(&o.webhookRate, "webhook-rate", 100, "webhook requests per second")
	flag.IntVar(&o.webhookSecs, "webhook-seconds", 5, "seconds per webhook run")
	flag.IntVar(&o.webhookRuns, "webhook-runs", 3, "webhook runs per path")
	flag.StringVar(&o.webhookCompare, "webhook-compare", "", "another meshca binary measured in the same webhook runs, right after -meshca (figures marked [compare])")
	serveFloorAddr := flag.String("serve-floor", "", "internal: serve the webhook phase's trivial HTTPS handler on this address")
	floorCA := flag.String("floor-ca", "", "internal: where -serve-floor writes its certificate")
	flag.IntVar(&o.cmN, "cm-n", 1000, "objects per daemon in the cert-manager side-by-side")
	flag.IntVar(&o.cmLiftedRuns, "cm-lifted-runs", 3, "runs of the side-by-side at lifted limits (at defaults it runs once)")
	flag.DurationVar(&o.cmTimeout, "cm-timeout", 4*time.Minute, "cap on one daemon's time to all-ready in the side-by-side (a capped figure is a lower bound)")
	flag.StringVar(&o.phases, "phases", "ready,certmanager,webhook,memory,renewal", "phases to run, comma-separated")
	render := flag.String("render", "", "only print the table (text and Markdown) of an earlier JSON results file")
	var skipped string
	flag.StringVar(&skipped, "skipped", "", "sizes left out of this run and why, ';'-separated, recorded in the results")
	flag.Parse()
	o.readyN, o.renewN = ints(readyN), ints(renewN)
	o.floorRuns = o.readyRuns
	log.SetFlags(log.Ltime)
	if *serveFloorAddr != "" {
		log.Fatal(serveFloor(*serveFloorAddr, *floorCA))
	}
	// envtest logs through controller-runtime; its messages are not results.
	ctrllog.SetLogger(logr.Discard())
	if *render != "" {
		if err := renderFile(*render); err != nil {
			log.Fatal(err)
		}
		return
	}
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &n); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

func run(o options) error {
	start := time.Now()
	ctx := context.Background()
	var err error
	if o.meshca, err = filepath.Abs(o.meshca); err != nil {
		return err
	}
	if o.webhookCompare != "" {
		if o.webhookCompare, err = filepath.Abs(o.webhookCompare); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(o.workDir, 0o755); err != nil {
		return err
	}
	var skipped string
	if f := flag.Lookup("skipped"); f != nil {
		skipped = f.Value.String()
	}
	res := &Results{
		Date:     time.Now().UTC().Format(time.RFC3339),
		Machine:  machine(),
		Versions: map[string]string{"go": runtime.Version(), "kube-apiserver": testenv.KubeVersion},
		Config:   map[string]string{"args": strings.Join(os.Args[1:], " ")},
	}
	for _, sk := range strings.Split(skipped, ";") {
		if sk = strings.TrimSpace(sk); sk != "" {
			res.Skipped = append(res.Skipped, sk)
		}
	}
	if o.gobench != "" {
		if err := foldGoBench(res, o.gobench); err != nil {
			return err
		}
	}
	log.Printf("starting the control plane from %s", testenv.BinDir())
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer env.Stop()
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = -1, 0 // the harness itself is never client-throttled
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	b := &bench{o: o, env: env, cfg: cfg, cs: cs, res: res}
	if err := b.ensureNamespace(ctx, meshcaNamespace, nil); err != nil {
		return err
	}
	if v, err := exec1(o.meshca, "version"); err == nil {
		res.Versions["meshca"] = strings.TrimSpace(v)
	}
	phases := map[string]func(context.Context) error{
		"ready": b.phaseReady, "certmanager": b.phaseCertManager, "webhook": b.phaseWebhook,
		"renewal": b.phaseRenewal, "memory": b.phaseMemory,
	}
	names := strings.Split(o.phases, ",")
	for i, p := range names {
		b.lastPhase = i == len(names)-1
		fn := phases[strings.TrimSpace(p)]
		if fn == nil {
			return fmt.Errorf("unknown phase %q", p)
		}
		t := time.Now()
		log.Printf("phase %s", p)
		if err := fn(ctx); err != nil {
			return fmt.Errorf("phase %s: %w", p, err)
		}
		log.Printf("phase %s done in %s", p, time.Since(t).Round(time.Second))
	}
	res.Goals = goals()
	res.checkGoals()
	res.Elapsed = time.Since(start).Round(time.Second).String()
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	js, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(o.out, js, 0o644); err != nil {
		return err
	}
	fmt.Println()
	res.print(os.Stdout)
	fmt.Printf("results: %s\n", o.out)
	return nil
}

// goals are issue 9's targets, each on one figure's median.
func goals() []*Goal {
	return []*Goal{
		{Figure: "issue/floor speed ecdsa-p256", Op: ">=", Target: 0.8, Text: "issuance ecdsa-p256 at least 0.8 of the crypto floor"},
		{Figure: "ready N=1000 / API write floor", Op: "<=", Target: 1.5, Text: "1,000 TLSContexts ready within 1.5x of the API write floor"},
		{Figure: "cert-manager/meshca all-ready, lifted", Op: ">=", Target: 10, Text: "at least 10x faster than cert-manager at lifted limits"},
		{Figure: "cert-manager/meshca all-ready, defaults", Op: ">=", Target: 50, Text: "at least 50x faster than cert-manager at default limits"},
		{Figure: "peak RSS 20000 unrelated / none", Op: "<=", Target: 1.2, Text: "RSS with 20,000 unrelated Secrets within 1.2x of none"},
		{Figure: "peak RSS, 1000 managed", Op: "<=", Target: 64, Text: "under 64 MiB at 1,000 managed"},
		{Figure: "webhook p99 direct", Op: "<=", Target: 5, Text: "webhook p99 under 5 ms direct"},
	}
}

func renderFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return err
	}
	res.checkGoals() // files from before the goals' basis was recorded
	res.print(os.Stdout)
	fmt.Println()
	res.markdown(os.Stdout)
	fmt.Println()
	res.markdownGoals(os.Stdout)
	return nil
}
