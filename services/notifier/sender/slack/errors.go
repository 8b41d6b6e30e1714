package slack

import (
	"errors"
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	"github.com/sluicehq/sluice/services/notifier/notify"
)

// transient are the Web API's error codes worth retrying (Slack's
// documented server-side failures). Every other code describes the
// request, the token or the channel, and retrying cannot help.
var transient = map[string]bool{
	"internal_error":      true,
	"fatal_error":         true,
	"service_unavailable": true,
	"request_timeout":     true,
	"ratelimited":         true,
	"rate_limited":        true,
}

// classify turns a Web API error into a delivery error: a rate limit is
// retried after Slack's Retry-After, a 5xx or a network error with
// backoff, and everything else is Permanent with what to do about it.
func (s *sender) classify(op, channel string, err error) error {
	prefix := fmt.Sprintf("slack service %q: %s %q", s.name, op, channel)
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return notify.RetryAfter(fmt.Errorf("%s: %w", prefix, err), rl.RetryAfter)
	}
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		if transient[se.Err] {
			return fmt.Errorf("%s: Slack answered %w", prefix, err)
		}
		return notify.Permanent(fmt.Errorf("%s: Slack answered %w: %s", prefix, err, advice(se, channel)))
	}
	var sc slack.StatusCodeError
	if errors.As(err, &sc) {
		return notify.ClassifyStatus(sc.Code, fmt.Errorf("%s: %w", prefix, err))
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// advice says what a person can do about a refused request.
func advice(se slack.SlackErrorResponse, channel string) string {
	switch se.Err {
	case "channel_not_found":
		return fmt.Sprintf("check the channel %s in the subscription; for a private channel, invite the bot to it", channel)
	case "not_in_channel":
		return fmt.Sprintf("invite the bot to %s (/invite @<the app> in the channel)", channel)
	case "is_archived", "channel_is_archived":
		return fmt.Sprintf("%s is archived: unarchive it or subscribe another channel", channel)
	case "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "not_allowed_token_type", "no_permission", "team_access_not_granted", "ekm_access_denied":
		return "Slack refused the token: set a valid bot token (xoxb-...) as the service's token, from the app's OAuth & Permissions page"
	case "missing_scope":
		needed := se.Needed
		if needed == "" {
			needed = "chat:write"
		}
		return fmt.Sprintf("the bot token lacks the scope %s: add it to the Slack app (chat:write.customize for username and icon) and reinstall the app", needed)
	case "invalid_blocks", "invalid_blocks_format", "invalid_attachments", "too_many_attachments", "msg_too_long", "msg_blocks_too_long", "no_text", "invalid_arguments":
		if len(se.ResponseMetadata.Messages) > 0 {
			return "fix the template: " + strings.Join(se.ResponseMetadata.Messages, "; ")
		}
		return "fix the template's message, slack.attachments or slack.blocks"
	case "message_not_found", "cant_update_message", "edit_window_closed":
		return "the message to update cannot be edited any more"
	default:
		return "see https://api.slack.com/methods/chat.postMessage#errors"
	}
}

// isGone reports whether an update failed because the message it edits
// no longer exists (deleted, or not the bot's).
func isGone(err error) bool {
	var se slack.SlackErrorResponse
	return errors.As(err, &se) && (se.Err == "message_not_found" || se.Err == "cant_update_message")
}
