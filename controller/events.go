package controller

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/reference"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// EventRecorder records Events on the objects meshca acts for
// (events.k8s.io/v1 semantics: a reason and an action).
type EventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Event reasons on TLSContexts and workloads.
const (
	EventIssued         = "Issued"
	EventRenewed        = "Renewed"
	EventBundleUpdated  = "BundleUpdated"
	EventPolicyRejected = "PolicyRejected"
	EventInvalidSpec    = "InvalidSpec"
	EventSecretConflict = "SecretConflict"
	EventCrossNamespace = "CrossNamespaceRefused"
	EventIssueFailed    = "IssueFailed"
	EventSecretDeleted  = "SecretDeleted"
	EventSecretReserved = "SecretReserved"
)

// PacedEventsConfig configures PacedEvents. Zero values mean the defaults.
type PacedEventsConfig struct {
	// Rate of Normal Events per second; 0 means 20.
	Rate float64
	// Queue is how many Normal Events may wait; 0 means 1000.
	Queue int
}

// PacedEvents is an EventRecorder in front of another. Warning Events pass
// straight through; Normal ones (Issued, Renewed, BundleUpdated and the
// like) wait in a bounded queue and go out at most Rate per second. So a
// burst of issuances (a first start, a CA rotation, many certificates due
// at once) spends the API server on the certificate writes first, and the
// Events about them follow; one issuance at a time is not delayed. When the
// queue is full the Event is dropped and counted: Events are a courtesy,
// the Secret's annotations are the record. Start drains the queue; until
// it runs, Normal Events wait (or are dropped when the queue is full), and
// those still queued when it returns are not written.
type PacedEvents struct {
	next    EventRecorder
	scheme  *runtime.Scheme
	limiter *rate.Limiter
	queue   chan pacedEvent
	dropped prometheus.Counter
	// overflow is set when an Event was dropped, for Start to log once.
	overflow atomic.Bool
}

var _ EventRecorder = (*PacedEvents)(nil)

// pacedEvent is a Normal Event as it waits: the object it regards as a
// reference, so the queue holds no copies of objects, and its note
// formatted already.
type pacedEvent struct {
	regarding, related   *corev1.ObjectReference
	reason, action, note string
}

// NewPacedEvents returns a PacedEvents writing through next; scheme resolves
// the kinds of typed objects; reg, when not nil, gets the counter of
// dropped Events (meshca_events_dropped_total).
func NewPacedEvents(next EventRecorder, scheme *runtime.Scheme, reg prometheus.Registerer, cfg PacedEventsConfig) (*PacedEvents, error) {
	if cfg.Rate == 0 {
		cfg.Rate = 20
	}
	if cfg.Rate < 0 {
		return nil, fmt.Errorf("event rate must be positive, got %v", cfg.Rate)
	}
	if cfg.Queue == 0 {
		cfg.Queue = 1000
	}
	burst := max(1, int(cfg.Rate))
	p := &PacedEvents{
		next:    next,
		scheme:  scheme,
		limiter: rate.NewLimiter(rate.Limit(cfg.Rate), burst),
		queue:   make(chan pacedEvent, cfg.Queue),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshca_events_dropped_total",
			Help: "Normal Events not recorded because too many were waiting to be written (see --event-qps).",
		}),
	}
	if reg != nil {
		if err := reg.Register(p.dropped); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Eventf records a Warning Event at once and queues a Normal one. It never
// blocks.
func (p *PacedEvents) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	if eventtype != corev1.EventTypeNormal {
		p.next.Eventf(regarding, related, eventtype, reason, action, note, args...)
		return
	}
	e := pacedEvent{reason: reason, action: action, note: fmt.Sprintf(note, args...)}
	var err error
	if e.regarding, err = reference.GetReference(p.scheme, regarding); err != nil {
		// The recorder could not make a reference either; let it say so.
		p.next.Eventf(regarding, related, eventtype, reason, action, "%s", e.note)
		return
	}
	if related != nil {
		if e.related, err = reference.GetReference(p.scheme, related); err != nil {
			e.related = nil
		}
	}
	select {
	case p.queue <- e:
	default:
		p.dropped.Inc()
		p.overflow.Store(true)
	}
}

// Start writes queued Events at the configured pace until ctx is done.
func (p *PacedEvents) Start(ctx context.Context) error {
	logged := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-p.queue:
			if err := p.limiter.Wait(ctx); err != nil {
				return nil
			}
			var related runtime.Object
			if e.related != nil {
				related = e.related
			}
			p.next.Eventf(e.regarding, related, corev1.EventTypeNormal, e.reason, e.action, "%s", e.note)
			switch {
			case len(p.queue) == 0:
				p.overflow.Store(false)
				logged = false
			case !logged && p.overflow.Load():
				log.FromContext(ctx).Info("Normal Events arrive faster than --event-qps lets them out; those that do not fit the queue are dropped (meshca_events_dropped_total)",
					"queue", cap(p.queue))
				logged = true
			}
		}
	}
}
