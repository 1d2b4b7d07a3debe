package controller

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// recordedEvent is one call a fakeRecorder saw.
type recordedEvent struct {
	regarding       *corev1.ObjectReference
	typ, reason     string
	note            string
	relatedRecorded bool
}

type fakeRecorder struct {
	mu  sync.Mutex
	got []recordedEvent
}

func (f *fakeRecorder) Eventf(regarding, related runtime.Object, eventtype, reason, _, note string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := recordedEvent{typ: eventtype, reason: reason, note: fmt.Sprintf(note, args...), relatedRecorded: related != nil}
	if ref, ok := regarding.(*corev1.ObjectReference); ok {
		e.regarding = ref
	}
	f.got = append(f.got, e)
}

func (f *fakeRecorder) events() []recordedEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recordedEvent(nil), f.got...)
}

// TestPacedEvents: Warnings go through at once, Normal Events wait for Start
// and then go out in order as references; a full queue drops and counts.
func TestPacedEvents(t *testing.T) {
	t.Parallel()
	next := &fakeRecorder{}
	p, err := NewPacedEvents(next, clientgoscheme.Scheme, nil, PacedEventsConfig{Rate: 1000, Queue: 3})
	if err != nil {
		t.Fatal(err)
	}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "u1"}}
	tc := tlsContext("ns", "gw", nil, nil)

	p.Eventf(d, nil, corev1.EventTypeWarning, EventPolicyRejected, "Issue", "name %s refused", "x.example")
	if got := next.events(); len(got) != 1 || got[0].reason != EventPolicyRejected || got[0].note != "name x.example refused" {
		t.Fatalf("Warning not passed through at once: %+v", got)
	}
	for i := range 5 { // 3 fit the queue, 2 are dropped
		p.Eventf(tc, nil, corev1.EventTypeNormal, EventIssued, "Issue", "serial %d", i)
	}
	if n := len(next.events()); n != 1 {
		t.Fatalf("Normal Events written before Start: %d", n-1)
	}
	if v := testutil.ToFloat64(p.dropped); v != 2 {
		t.Errorf("dropped = %v, want 2", v)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Start(ctx) }()
	eventually(t, 10*time.Second, "queued Events written", func() bool { return len(next.events()) == 4 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Start: %v", err)
	}
	for i, e := range next.events()[1:] {
		if e.typ != corev1.EventTypeNormal || e.note != fmt.Sprintf("serial %d", i) || e.relatedRecorded {
			t.Errorf("event %d: %+v", i, e)
		}
		if e.regarding == nil || e.regarding.Kind != "TLSContext" || e.regarding.Name != "gw" || e.regarding.Namespace != "ns" {
			t.Errorf("event %d regards %+v, want the TLSContext ns/gw", i, e.regarding)
		}
	}
}

// TestPacedEventsTypedObject: a typed object without TypeMeta (as the cache
// returns them) gets its kind from the scheme.
func TestPacedEventsTypedObject(t *testing.T) {
	t.Parallel()
	next := &fakeRecorder{}
	p, err := NewPacedEvents(next, clientgoscheme.Scheme, nil, PacedEventsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p.Eventf(&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: "u2"}}, nil,
		corev1.EventTypeNormal, EventRenewed, "Issue", "renewed")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = p.Start(ctx) }()
	eventually(t, 10*time.Second, "the Event written", func() bool { return len(next.events()) == 1 })
	ref := next.events()[0].regarding
	if ref == nil || ref.Kind != "StatefulSet" || ref.APIVersion != "apps/v1" || ref.UID != "u2" {
		t.Errorf("reference %+v, want apps/v1 StatefulSet with its UID", ref)
	}
}
