package events

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Dead-letter headers, added to the original message's headers.
const (
	HeaderDLQReason     = "Sluice-Dlq-Reason"
	HeaderDLQSubject    = "Sluice-Dlq-Subject"
	HeaderDLQStream     = "Sluice-Dlq-Stream"
	HeaderDLQSequence   = "Sluice-Dlq-Sequence"
	HeaderDLQConsumer   = "Sluice-Dlq-Consumer"
	HeaderDLQDeliveries = "Sluice-Dlq-Deliveries"
	HeaderDLQMsgID      = "Sluice-Dlq-Msg-Id"
	HeaderDLQTime       = "Sluice-Dlq-Time"
)

// DeadLetter is a message no consumer could handle: its original bytes and
// headers, where it came from, and why it was given up.
type DeadLetter struct {
	// Subject, Stream and Sequence locate the original message.
	Subject  string
	Stream   string
	Sequence uint64
	// Consumer is the durable consumer that gave it up.
	Consumer   string
	Deliveries uint64
	Reason     string
	// Data and Header are the original message's, unchanged (the original
	// Nats-Msg-Id is in HeaderDLQMsgID).
	Data   []byte
	Header nats.Header
	At     time.Time
}

// DeadLetterSubject is where a consumer's dead letters go:
// sluice.dlq.<stream>.<consumer>.
func DeadLetterSubject(stream, consumer string) string {
	return DeadLetterRoot + "." + stream + "." + consumer
}

func deadLetterOf(subject string, data []byte, header nats.Header, d Delivery, reason string) DeadLetter {
	return DeadLetter{
		Subject: subject, Stream: d.Stream, Sequence: d.Sequence, Consumer: d.Consumer,
		Deliveries: d.Attempt, Reason: reason, Data: data, Header: header, At: time.Now().UTC(),
	}
}

// deadLetter stores dl on the dead-letter stream. Its message id derives from
// the original stream, sequence and consumer, so the same message
// dead-lettered twice by one consumer (by two replicas, or by a handler and
// the max-deliveries advisory) is stored once, while each consumer that gives
// it up gets its own dead letter.
func (c *Client) deadLetter(ctx context.Context, dl DeadLetter) error {
	msg := nats.NewMsg(DeadLetterSubject(dl.Stream, dl.Consumer))
	for k, vs := range dl.Header {
		if strings.HasPrefix(strings.ToLower(k), "nats-") {
			if strings.EqualFold(k, jetstream.MsgIDHeader) && len(vs) > 0 {
				msg.Header.Set(HeaderDLQMsgID, vs[0])
			}
			continue
		}
		msg.Header[k] = append([]string(nil), vs...)
	}
	msg.Header.Set(HeaderDLQReason, dl.Reason)
	msg.Header.Set(HeaderDLQSubject, dl.Subject)
	msg.Header.Set(HeaderDLQStream, dl.Stream)
	msg.Header.Set(HeaderDLQSequence, strconv.FormatUint(dl.Sequence, 10))
	msg.Header.Set(HeaderDLQConsumer, dl.Consumer)
	msg.Header.Set(HeaderDLQDeliveries, strconv.FormatUint(dl.Deliveries, 10))
	msg.Header.Set(HeaderDLQTime, dl.At.Format(time.RFC3339Nano))
	msg.Data = dl.Data
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_, err := c.publishMsg(pctx, msg, fmt.Sprintf("dlq.%s.%s.%d", dl.Stream, dl.Consumer, dl.Sequence))
	return err
}

// ParseDeadLetter reads a message from the dead-letter stream.
func ParseDeadLetter(subject string, data []byte, header nats.Header) (DeadLetter, error) {
	if !strings.HasPrefix(subject, DeadLetterRoot+".") || header.Get(HeaderDLQReason) == "" {
		return DeadLetter{}, fmt.Errorf("%w: %s is not a dead letter", ErrMalformed, subject)
	}
	dl := DeadLetter{
		Subject:  header.Get(HeaderDLQSubject),
		Stream:   header.Get(HeaderDLQStream),
		Consumer: header.Get(HeaderDLQConsumer),
		Reason:   header.Get(HeaderDLQReason),
		Data:     data,
		Header:   nats.Header{},
	}
	dl.Sequence, _ = strconv.ParseUint(header.Get(HeaderDLQSequence), 10, 64)
	dl.Deliveries, _ = strconv.ParseUint(header.Get(HeaderDLQDeliveries), 10, 64)
	dl.At, _ = time.Parse(time.RFC3339Nano, header.Get(HeaderDLQTime))
	for k, vs := range header {
		if strings.HasPrefix(k, "Sluice-Dlq-") || strings.HasPrefix(strings.ToLower(k), "nats-") {
			continue
		}
		dl.Header[k] = vs
	}
	if id := header.Get(HeaderDLQMsgID); id != "" {
		dl.Header.Set(jetstream.MsgIDHeader, id)
	}
	return dl, nil
}

// maxDeliveriesAdvisory is the part of the server's
// io.nats.jetstream.advisory.v1.max_deliver advisory that Sluice reads.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// watchMaxDeliveries dead-letters messages the server gave up redelivering
// because no delivery was ever settled (the handler's process died each
// time). Every replica listens; the dead-letter id makes the copy happen once.
func (c *Client) watchMaxDeliveries(cfg ConsumerConfig) (*nats.Subscription, error) {
	subject := fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", cfg.Stream, cfg.Durable)
	sub, err := c.nc.Subscribe(subject, func(m *nats.Msg) {
		var adv maxDeliveriesAdvisory
		if err := json.Unmarshal(m.Data, &adv); err != nil {
			c.log.Warn("unreadable max-deliveries advisory", "subject", m.Subject, "error", err)
			return
		}
		go c.deadLetterFromStream(adv)
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	return sub, nil
}

func (c *Client) deadLetterFromStream(adv maxDeliveriesAdvisory) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := c.log.With("stream", adv.Stream, "consumer", adv.Consumer, "stream_seq", adv.StreamSeq)
	s, err := c.js.Stream(ctx, adv.Stream)
	if err != nil {
		log.Error("cannot dead-letter a message past MaxDeliver", "error", err)
		return
	}
	raw, err := s.GetMsg(ctx, adv.StreamSeq)
	if err != nil {
		log.Error("cannot read a message past MaxDeliver to dead-letter it", "error", err)
		return
	}
	reason := fmt.Sprintf("delivered %d times without being acknowledged (MaxDeliver reached): the handler crashed or hung on every attempt", adv.Deliveries)
	dl := DeadLetter{
		Subject: raw.Subject, Stream: adv.Stream, Sequence: adv.StreamSeq, Consumer: adv.Consumer,
		Deliveries: adv.Deliveries, Reason: reason, Data: raw.Data, Header: raw.Header, At: time.Now().UTC(),
	}
	if err := c.deadLetter(ctx, dl); err != nil {
		log.Error("dead-letter publish failed", "error", err)
		return
	}
	log.Error("event dead-lettered", "reason", reason, "reason_class", DeadLetterUnacknowledged)
	if c.obs != nil {
		// Every replica sees the advisory; the dead letter is stored once but
		// each replica counts it.
		c.obs.DeadLettered(adv.Consumer, DeadLetterUnacknowledged)
	}
}
