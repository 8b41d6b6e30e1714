package teams

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/services/notifier/notify"
)

// Adaptive Card and message envelope, as a Teams workflow webhook takes
// them: {"type":"message","attachments":[{"contentType":
// "application/vnd.microsoft.card.adaptive","content":<card>}]}.
const (
	adaptiveContentType = "application/vnd.microsoft.card.adaptive"
	adaptiveSchema      = "http://adaptivecards.io/schemas/adaptive-card.json"
	// adaptiveVersion is the newest schema every Teams client renders.
	adaptiveVersion = "1.4"
)

type envelope struct {
	Type        string       `json:"type"`
	Summary     string       `json:"summary,omitempty"`
	Attachments []attachment `json:"attachments"`
}

type attachment struct {
	ContentType string `json:"contentType"`
	ContentURL  any    `json:"contentUrl"`
	Content     any    `json:"content"`
}

type card struct {
	Schema       string    `json:"$schema"`
	Type         string    `json:"type"`
	Version      string    `json:"version"`
	FallbackText string    `json:"fallbackText,omitempty"`
	Body         []element `json:"body"`
	Actions      []action  `json:"actions,omitempty"`
	MSTeams      any       `json:"msteams,omitempty"`
}

// element is a TextBlock, a FactSet or a Container.
type element struct {
	Type      string    `json:"type"`
	Text      string    `json:"text,omitempty"`
	Size      string    `json:"size,omitempty"`
	Weight    string    `json:"weight,omitempty"`
	Color     string    `json:"color,omitempty"`
	IsSubtle  bool      `json:"isSubtle,omitempty"`
	Wrap      bool      `json:"wrap,omitempty"`
	Separator bool      `json:"separator,omitempty"`
	Facts     []fact    `json:"facts,omitempty"`
	Items     []element `json:"items,omitempty"`
}

type fact struct {
	Title string `json:"title"`
	Value string `json:"value"`
}

type action struct {
	Type  string `json:"type"`
	Title string `json:"title"`
	URL   string `json:"url"`
}

// WorkflowMessage is the body posted to a workflow webhook for n. The
// teams part's template, when set, is the card: an Adaptive Card (sent
// in the envelope) or a whole envelope ({"type":"message",...}). Else
// the card is built from title, text (default n's message), themeColor
// (as the title's color), facts, sections and potentialAction's OpenUri
// actions. An error says which template field is wrong.
func WorkflowMessage(n notify.Notification) ([]byte, error) {
	t := n.Teams
	if t == nil {
		t = &notify.Teams{}
	}
	if t.Template != "" {
		var obj map[string]any
		if err := json.Unmarshal([]byte(t.Template), &obj); err != nil {
			return nil, fmt.Errorf("teams.template is not a JSON object: %v", err)
		}
		switch obj["type"] {
		case "message":
			return []byte(t.Template), nil
		case "AdaptiveCard":
			return json.Marshal(envelope{Type: "message", Summary: t.Summary,
				Attachments: []attachment{{ContentType: adaptiveContentType, Content: json.RawMessage(t.Template)}}})
		default:
			return nil, fmt.Errorf(`teams.template: a workflow webhook takes an Adaptive Card ("type": "AdaptiveCard") or a message ("type": "message"); a MessageCard only goes to a legacy connector URL`)
		}
	}
	c := card{Schema: adaptiveSchema, Type: "AdaptiveCard", Version: adaptiveVersion,
		FallbackText: firstNonEmpty(t.Summary, t.Title, n.Message),
		MSTeams:      map[string]string{"width": "Full"}}
	if t.Title != "" {
		c.Body = append(c.Body, element{Type: "TextBlock", Text: t.Title, Size: "Large", Weight: "Bolder", Color: Color(t.ThemeColor), Wrap: true})
	}
	if text := firstNonEmpty(t.Text, n.Message); text != "" {
		c.Body = append(c.Body, element{Type: "TextBlock", Text: text, Wrap: true})
	}
	if t.Facts != "" {
		facts, err := parseFacts(t.Facts)
		if err != nil {
			return nil, fmt.Errorf("teams.facts: %w", err)
		}
		c.Body = append(c.Body, element{Type: "FactSet", Facts: facts})
	}
	if t.Sections != "" {
		var sections []map[string]any
		if err := json.Unmarshal([]byte(t.Sections), &sections); err != nil {
			return nil, fmt.Errorf("teams.sections is not a JSON array of objects: %v", err)
		}
		for i, s := range sections {
			el, err := sectionContainer(s)
			if err != nil {
				return nil, fmt.Errorf("teams.sections[%d]: %w", i, err)
			}
			c.Body = append(c.Body, el)
		}
	}
	if t.PotentialAction != "" {
		actions, err := openURLActions(t.PotentialAction)
		if err != nil {
			return nil, fmt.Errorf("teams.potentialAction: %w", err)
		}
		c.Actions = actions
	}
	if len(c.Body) == 0 {
		return nil, fmt.Errorf("nothing to send: the template has no message and no teams title, text, facts or sections")
	}
	return json.Marshal(envelope{Type: "message", Summary: t.Summary,
		Attachments: []attachment{{ContentType: adaptiveContentType, Content: c}}})
}

// sectionContainer turns a MessageCard section into a Container: its
// titles and texts as TextBlocks, its facts as a FactSet. Images are
// left out.
func sectionContainer(s map[string]any) (element, error) {
	el := element{Type: "Container", Separator: true}
	text := func(key string, style element) {
		if v, ok := s[key].(string); ok && v != "" {
			style.Type, style.Text, style.Wrap = "TextBlock", v, true
			el.Items = append(el.Items, style)
		}
	}
	text("title", element{Size: "Medium", Weight: "Bolder"})
	text("activityTitle", element{Weight: "Bolder"})
	text("activitySubtitle", element{IsSubtle: true})
	text("activityText", element{})
	text("text", element{})
	if raw, ok := s["facts"]; ok {
		b, _ := json.Marshal(raw)
		facts, err := parseFacts(string(b))
		if err != nil {
			return element{}, fmt.Errorf("facts: %w", err)
		}
		el.Items = append(el.Items, element{Type: "FactSet", Facts: facts})
	}
	return el, nil
}

// parseFacts reads MessageCard facts: [{"name": ..., "value": ...}].
func parseFacts(raw string) ([]fact, error) {
	var in []map[string]any
	if err := json.Unmarshal([]byte(raw), &in); err != nil {
		return nil, fmt.Errorf("not a JSON array of {name, value}: %v", err)
	}
	facts := make([]fact, 0, len(in))
	for i, f := range in {
		name, ok := f["name"].(string)
		if !ok {
			return nil, fmt.Errorf("[%d] has no name", i)
		}
		facts = append(facts, fact{Title: name, Value: scalar(f["value"])})
	}
	return facts, nil
}

// openURLActions turns MessageCard OpenUri actions into Action.OpenUrl;
// other kinds (HttpPOST, ActionCard) cannot be answered through a
// workflow webhook and are left out.
func openURLActions(raw string) ([]action, error) {
	var in []map[string]any
	if err := json.Unmarshal([]byte(raw), &in); err != nil {
		return nil, fmt.Errorf("not a JSON array of actions: %v", err)
	}
	var out []action
	for _, a := range in {
		if a["@type"] != "OpenUri" {
			continue
		}
		targets, _ := a["targets"].([]any)
		uri := ""
		for _, t := range targets {
			tm, _ := t.(map[string]any)
			u, _ := tm["uri"].(string)
			if uri == "" || tm["os"] == "default" {
				uri = u
			}
		}
		if uri != "" {
			name, _ := a["name"].(string)
			out = append(out, action{Type: "Action.OpenUrl", Title: name, URL: uri})
		}
	}
	return out, nil
}

// Color is the Adaptive Card text color for a MessageCard themeColor:
// a named color (good, warning, attention, accent, ...) as it is, a hex
// color by its hue (reds Attention, oranges and yellows Warning, greens
// Good, blues and purples Accent, greys Default).
func Color(theme string) string {
	theme = strings.TrimSpace(theme)
	for _, named := range []string{"Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention"} {
		if strings.EqualFold(theme, named) {
			return named
		}
	}
	hex := strings.TrimPrefix(theme, "#")
	if len(hex) == 3 {
		hex = string([]byte{hex[0], hex[0], hex[1], hex[1], hex[2], hex[2]})
	}
	v, err := strconv.ParseUint(hex, 16, 32)
	if len(hex) != 6 || err != nil {
		return ""
	}
	r, g, b := float64(v>>16&0xff)/255, float64(v>>8&0xff)/255, float64(v&0xff)/255
	hi, lo := max(r, g, b), min(r, g, b)
	if hi-lo < 0.15 {
		return "Default"
	}
	var hue float64
	switch hi {
	case r:
		hue = 60 * (g - b) / (hi - lo)
	case g:
		hue = 60 * (2 + (b-r)/(hi-lo))
	default:
		hue = 60 * (4 + (r-g)/(hi-lo))
	}
	if hue < 0 {
		hue += 360
	}
	switch {
	case hue < 15 || hue >= 330:
		return "Attention"
	case hue < 70:
		return "Warning"
	case hue < 170:
		return "Good"
	default:
		return "Accent"
	}
}

// MessageCard is the body posted to a legacy connector for n, as
// notifications-engine builds it: the template as it is, or a
// MessageCard of title, summary, text, themeColor, sections (facts as
// one more section) and potentialAction.
func MessageCard(n notify.Notification) ([]byte, error) {
	t := n.Teams
	if t == nil {
		t = &notify.Teams{}
	}
	if t.Template != "" {
		if !json.Valid([]byte(t.Template)) {
			return nil, fmt.Errorf("teams.template is not valid JSON")
		}
		return []byte(t.Template), nil
	}
	msg := map[string]any{
		"@type":    "MessageCard",
		"@context": "https://schema.org/extensions",
		"text":     firstNonEmpty(t.Text, n.Message),
		// A connector refuses a card without summary or text.
		"summary": firstNonEmpty(t.Summary, t.Title, n.Message),
	}
	if t.Title != "" {
		msg["title"] = t.Title
	}
	if t.ThemeColor != "" {
		msg["themeColor"] = t.ThemeColor
	}
	var sections []any
	if t.Sections != "" {
		if err := json.Unmarshal([]byte(t.Sections), &sections); err != nil {
			return nil, fmt.Errorf("teams.sections is not a JSON array: %v", err)
		}
	}
	if t.Facts != "" {
		var facts []any
		if err := json.Unmarshal([]byte(t.Facts), &facts); err != nil {
			return nil, fmt.Errorf("teams.facts is not a JSON array: %v", err)
		}
		sections = append(sections, map[string]any{"facts": facts})
	}
	if len(sections) > 0 {
		msg["sections"] = sections
	}
	if t.PotentialAction != "" {
		var actions []any
		if err := json.Unmarshal([]byte(t.PotentialAction), &actions); err != nil {
			return nil, fmt.Errorf("teams.potentialAction is not a JSON array: %v", err)
		}
		msg["potentialAction"] = actions
	}
	return json.Marshal(msg)
}

func scalar(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
