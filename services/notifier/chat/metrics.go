package chat

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics counts chat commands: sluice_chat_commands_total{chat,command,outcome}.
type metrics struct{ commands *prometheus.CounterVec }

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_chat_commands_total",
		Help: "Chat commands by chat (slack, teams), command and outcome (applied, refused, forbidden, unanswered, answered, failed, invalid, unauthenticated).",
	}, []string{"chat", "command", "outcome"})
	if reg == nil {
		return &metrics{commands: c}, nil
	}
	if err := reg.Register(c); err != nil {
		// Slack and Teams in one process share the series.
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
		if !ok {
			return nil, err
		}
		c = existing
	}
	return &metrics{commands: c}, nil
}

func (m *metrics) command(chat, command, outcome string) {
	if command == "" {
		command = "none"
	}
	m.commands.WithLabelValues(chat, command, outcome).Inc()
}
