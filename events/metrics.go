package events

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the event log's Prometheus measurements.
type Metrics struct {
	Recorded        *prometheus.CounterVec
	OutboxLag       prometheus.Gauge
	DispatchLatency prometheus.Histogram
	ConsumerLag     *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Recorded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_events_recorded_total",
			Help: "Events committed to the log, counted as the relay dispatches them, by event type.",
		}, []string{"type"}),
		OutboxLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_outbox_lag_seconds",
			Help: "Age of the oldest event not yet dispatched (0 when none).",
		}),
		DispatchLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_event_dispatch_latency_seconds",
			Help:    "Time from an event's commit-time capture to its dispatch to consumers.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		ConsumerLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_consumer_lag_events",
			Help: "Positions between the newest event and a durable consumer's cursor, by consumer.",
		}, []string{"consumer"}),
	}
	reg.MustRegister(m.Recorded, m.OutboxLag, m.DispatchLatency, m.ConsumerLag)
	return m
}

func (m *Metrics) dispatched(batch []Event, at time.Time) {
	if m == nil {
		return
	}
	for _, e := range batch {
		m.Recorded.WithLabelValues(e.EventType).Inc()
		m.DispatchLatency.Observe(at.Sub(e.CreatedAt).Seconds())
	}
}
