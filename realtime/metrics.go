package realtime

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	clients  prometheus.Gauge
	frames   prometheus.Counter
	replayed prometheus.Counter
	slow     prometheus.Counter
	refused  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		clients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_sse_clients", Help: "Server-Sent Event streams connected to this instance."}),
		frames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_sse_frames_total", Help: "Event frames sent on streams, replayed ones included."}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_sse_replayed_frames_total", Help: "Event frames sent from the log to resuming streams (Last-Event-ID)."}),
		slow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_sse_slow_disconnects_total", Help: "Streams disconnected because they fell behind."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_sse_refused_total", Help: "Streams refused by a limit (per caller or in total)."}, []string{"limit"}),
	}
	if reg != nil {
		reg.MustRegister(m.clients, m.frames, m.replayed, m.slow, m.refused)
	}
	return m
}
