package webhook

import (
	"slices"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// RequestLogger is the LogConstructor of pullgate's admission webhooks. It gives a request's
// logger the values controller-runtime's DefaultLogConstructor gives it (but "object",
// which repeats namespace and name), and hands them to
// the underlying logger only when a message is logged. zap encodes values as soon as they
// are added, admission.Webhook builds the logger twice per request, and almost every
// admission logs nothing: that encoding was a sixth of what a warm admission allocated.
func RequestLogger(base logr.Logger, req *admission.Request) logr.Logger {
	sink := base.GetSink()
	if req == nil || sink == nil {
		return base
	}
	return base.WithSink(&deferredValues{sink: sink, values: []any{
		"namespace", req.Namespace, "name", req.Name,
		"resource", req.Resource, "user", req.UserInfo.Username,
		"requestID", req.UID,
	}})
}

// deferredValues is a logr.LogSink that keeps the values given to WithValues and adds them
// to its underlying sink when a message is logged.
type deferredValues struct {
	sink   logr.LogSink
	values []any
}

var _ logr.LogSink = (*deferredValues)(nil)

// Init does nothing: the underlying sink was initialised when its logger was made, and
// initialising it again would change its call depth for every other user.
func (d *deferredValues) Init(logr.RuntimeInfo) {}

func (d *deferredValues) Enabled(level int) bool { return d.sink.Enabled(level) }

func (d *deferredValues) Info(level int, msg string, keysAndValues ...any) {
	d.resolved().Info(level, msg, keysAndValues...)
}

func (d *deferredValues) Error(err error, msg string, keysAndValues ...any) {
	d.resolved().Error(err, msg, keysAndValues...)
}

func (d *deferredValues) WithValues(keysAndValues ...any) logr.LogSink {
	return &deferredValues{sink: d.sink, values: append(slices.Clip(d.values), keysAndValues...)}
}

func (d *deferredValues) WithName(name string) logr.LogSink {
	return &deferredValues{sink: d.sink.WithName(name), values: d.values}
}

// resolved is the underlying sink with the values, one frame deeper: the caller's line is
// the one that called Info or Error, not this file's.
func (d *deferredValues) resolved() logr.LogSink {
	s := d.sink
	if cd, ok := s.(logr.CallDepthLogSink); ok {
		s = cd.WithCallDepth(1)
	}
	return s.WithValues(d.values...)
}
