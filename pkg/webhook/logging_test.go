package webhook

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// recordingSink is a logr.LogSink that records what reaches it.
type recordingSink struct {
	mu         *sync.Mutex
	lines      *[]string
	withValues *int // calls of WithValues on this sink or those derived from it
	name       string
	values     []any
	verbosity  int
}

func newRecordingSink(verbosity int) *recordingSink {
	return &recordingSink{mu: &sync.Mutex{}, lines: new([]string), withValues: new(int), verbosity: verbosity}
}

func (s *recordingSink) Init(logr.RuntimeInfo)  {}
func (s *recordingSink) Enabled(level int) bool { return level <= s.verbosity }
func (s *recordingSink) Info(level int, msg string, kv ...any) {
	s.record(fmt.Sprintf("info %s %q %v", s.name, msg, append(slices.Clip(s.values), kv...)))
}
func (s *recordingSink) Error(err error, msg string, kv ...any) {
	s.record(fmt.Sprintf("error %s %q %v: %v", s.name, msg, append(slices.Clip(s.values), kv...), err))
}
func (s *recordingSink) record(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*s.lines = append(*s.lines, line)
}
func (s *recordingSink) WithValues(kv ...any) logr.LogSink {
	s.mu.Lock()
	*s.withValues++
	s.mu.Unlock()
	c := *s
	c.values = append(slices.Clip(s.values), kv...)
	return &c
}
func (s *recordingSink) WithName(name string) logr.LogSink {
	c := *s
	c.name = strings.TrimPrefix(s.name+"/"+name, "/")
	return &c
}

func TestRequestLogger(t *testing.T) {
	req := &admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "uid-1", Namespace: "shop", Name: "web",
		Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		UserInfo: authenticationv1.UserInfo{Username: "alice"},
	}}
	sink := newRecordingSink(1)
	log := RequestLogger(logr.New(sink).WithName("admission"), req)

	// What most admissions do: build the logger, maybe ask about verbose levels, log nothing.
	log.V(5).Info("received request")
	log.WithValues("extra", 1).V(2).Info("not shown")
	if *sink.withValues != 0 || len(*sink.lines) != 0 {
		t.Fatalf("nothing logged, yet the sink got %d WithValues calls and lines %q", *sink.withValues, *sink.lines)
	}

	log.WithName("validate").WithValues("kind", "Pod").V(1).Info("Admission decided", "decision", "allowed")
	log.Error(errors.New("boom"), "Reading pull secrets")
	want := []string{
		`info admission/validate "Admission decided" [namespace shop name web resource { v1 pods} user alice requestID uid-1 kind Pod decision allowed]`,
		`error admission "Reading pull secrets" [namespace shop name web resource { v1 pods} user alice requestID uid-1]: boom`,
	}
	if !slices.Equal(*sink.lines, want) {
		t.Errorf("logged:\n%s\nwant:\n%s", strings.Join(*sink.lines, "\n"), strings.Join(want, "\n"))
	}

	if got := RequestLogger(logr.New(sink), nil); got.GetSink() != logr.LogSink(sink) {
		t.Errorf("without a request the base logger should come back unchanged")
	}
}
