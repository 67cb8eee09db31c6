package webhooks

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the webhook queue's Prometheus measurements.
type Metrics struct {
	Deliveries     *prometheus.CounterVec
	AttemptLatency prometheus.Histogram
	QueueDepth     prometheus.Gauge
	OldestPending  prometheus.Gauge
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_webhook_deliveries_total",
			Help: "Delivery attempts by outcome: succeeded, retrying (failed, tried again later) or dead (failed for the last time).",
		}, []string{"outcome"}),
		AttemptLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_webhook_attempt_duration_seconds",
			Help:    "Time from sending a delivery to its answer (or failure).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		QueueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_webhook_queue_depth",
			Help: "Deliveries pending or retrying.",
		}),
		OldestPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_webhook_oldest_pending_seconds",
			Help: "Age of the event of the oldest delivery pending or retrying (0 when none).",
		}),
	}
	reg.MustRegister(m.Deliveries, m.AttemptLatency, m.QueueDepth, m.OldestPending)
	return m
}

func (m *Metrics) attempted(outcome string, latency time.Duration) {
	if m == nil {
		return
	}
	m.Deliveries.WithLabelValues(outcome).Inc()
	m.AttemptLatency.Observe(latency.Seconds())
}
