package slack

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/notifier/notify"
)

// content is what a message says, decoded from the rendered template.
type content struct {
	text        string
	attachments []slack.Attachment
	blocks      []slack.Block
}

// content decodes m's text, attachments and blocks. Attachments and
// blocks that are not JSON arrays are an error naming the template field.
func (s *sender) content(m notify.Message) (content, error) {
	c := content{text: m.Notification.Message}
	sl := slackPart(m)
	if strings.TrimSpace(sl.Attachments) != "" {
		if err := json.Unmarshal([]byte(sl.Attachments), &c.attachments); err != nil {
			return c, fmt.Errorf("slack.attachments is not a JSON array of attachments: %v", err)
		}
	}
	if strings.TrimSpace(sl.Blocks) != "" {
		var b slack.Blocks
		if err := json.Unmarshal([]byte(sl.Blocks), &b); err != nil {
			return c, fmt.Errorf("slack.blocks is not a JSON array of blocks: %v", err)
		}
		c.blocks = b.BlockSet
	}
	return c, nil
}

// options are the message's content as slack-go options, for a post and
// an update alike.
func (c content) options() []slack.MsgOption {
	opts := []slack.MsgOption{slack.MsgOptionText(c.text, false)}
	if len(c.attachments) > 0 {
		opts = append(opts, slack.MsgOptionAttachments(c.attachments...))
	}
	if len(c.blocks) > 0 {
		opts = append(opts, slack.MsgOptionBlocks(c.blocks...))
	}
	return opts
}

// Block ids of what the sender adds.
const (
	buttonsBlockID = "sluice.decide"
	textBlockID    = "sluice.text"
)

// maxSectionText is Slack's limit on a section block's text.
const maxSectionText = 3000

// withButtons returns blocks followed by an actions block with Promote
// and Abort for rollout. Slack shows blocks instead of the text, so a
// message that had none gets its text as a first section.
func withButtons(blocks []slack.Block, text string, rollout events.Ref) []slack.Block {
	out := make([]slack.Block, 0, len(blocks)+2)
	if len(blocks) == 0 && strings.TrimSpace(text) != "" {
		if r := []rune(text); len(r) > maxSectionText {
			text = string(r[:maxSectionText-1]) + "…"
		}
		out = append(out, slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, text, false, false), nil, nil, slack.SectionBlockOptionBlockID(textBlockID)))
	}
	out = append(out, blocks...)
	value := rollout.String()
	promote := slack.NewButtonBlockElement(notify.ActionPromote, value,
		slack.NewTextBlockObject(slack.PlainTextType, "Promote", false, false)).WithStyle(slack.StylePrimary)
	abort := slack.NewButtonBlockElement(notify.ActionAbort, value,
		slack.NewTextBlockObject(slack.PlainTextType, "Abort", false, false)).WithStyle(slack.StyleDanger).
		WithConfirm(slack.NewConfirmationBlockObject(
			slack.NewTextBlockObject(slack.PlainTextType, "Abort "+value+"?", false, false),
			slack.NewTextBlockObject(slack.MarkdownType, "All traffic goes back to the stable version.", false, false),
			slack.NewTextBlockObject(slack.PlainTextType, "Abort", false, false),
			slack.NewTextBlockObject(slack.PlainTextType, "Cancel", false, false)))
	return append(out, slack.NewActionBlock(buttonsBlockID, promote, abort))
}

// step is what one Send does with the Web API.
type step struct {
	// post a message; reply: in the message's thread (else at the top).
	post, reply bool
	// update the thread's first message in place.
	update bool
}

// plan decides what a message with groupingKey and policy does, given
// whether an earlier message of the grouping key started a thread: as
// notifications-engine does, Post replies in the thread, Update edits the
// first message, PostAndUpdate does both; without a thread (or a grouping
// key) the message is posted at the top.
func plan(groupingKey, policy string, haveThread bool) (step, error) {
	switch policy {
	case "", notify.SlackPost, notify.SlackUpdate, notify.SlackPostAndUpdate:
	default:
		return step{}, fmt.Errorf("slack.deliveryPolicy %q: want %s, %s or %s", policy, notify.SlackPost, notify.SlackPostAndUpdate, notify.SlackUpdate)
	}
	if groupingKey == "" || !haveThread {
		return step{post: true}, nil
	}
	switch policy {
	case notify.SlackUpdate:
		return step{update: true}, nil
	case notify.SlackPostAndUpdate:
		return step{post: true, reply: true, update: true}, nil
	default:
		return step{post: true, reply: true}, nil
	}
}

// threadRef is a thread's first message: Receipt.Thread is
// "<channel id>:<ts>".
type threadRef struct{ channel, ts string }

func (t threadRef) String() string { return t.channel + ":" + t.ts }

func parseThread(s string) (threadRef, bool) {
	channel, ts, ok := strings.Cut(s, ":")
	if !ok || channel == "" || ts == "" {
		return threadRef{}, false
	}
	return threadRef{channel: channel, ts: ts}, true
}
