// Package config is the notifier's configuration: the data of Argo
// Rollouts' argo-rollouts-notification-configmap (service.*, template.*,
// trigger.*, defaultTriggers, subscriptions, context) and Sluice's own
// keys (commands.slack, commands.teams, cdevents), with $name secret
// references resolved. It decides who is subscribed to a trigger, which of
// a trigger's conditions hold, and renders templates. Pure: the only I/O
// is the Secrets sources'.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/expr-lang/expr/vm"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/services/notifier/notify"
)

// ErrInvalid is wrapped by every configuration problem.
var ErrInvalid = errors.New("invalid notification configuration")

// FieldError is one configuration problem at a path ("trigger.on-x[0].send[0]").
type FieldError struct {
	Path string
	Msg  string
	// err is what it wraps besides ErrInvalid (ErrSecretNotFound).
	err error
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

// Unwrap lets errors.Is find ErrInvalid (and ErrSecretNotFound).
func (e *FieldError) Unwrap() []error {
	if e.err != nil {
		return []error{ErrInvalid, e.err}
	}
	return []error{ErrInvalid}
}

// ServiceTypes are the notification services the notifier has.
var ServiceTypes = []string{"email", "github", "slack", "teams", "webhook"}

// CommandChats are the chats commands.<chat> configures.
var CommandChats = []string{"slack", "teams"}

// keyForms lists the accepted keys, for the unknown-key error.
const keyForms = "service.<type>, service.<type>.<name>, template.<name>, trigger.<name>, defaultTriggers, defaultTriggers.<service>, subscriptions, context, commands.slack, commands.teams, cdevents"

// Annotation prefix of subscriptions on a Rollout.
const SubscribeAnnotation = "notifications.argoproj.io/subscribe."

// Config is a parsed, valid configuration. It is immutable and safe for
// concurrent use.
type Config struct {
	services        []notify.ServiceConfig
	serviceNames    map[string]bool
	templates       map[string]*tmpl
	triggers        map[string][]condition
	defaultTriggers []string
	serviceDefaults map[string][]string
	subscriptions   []subscription
	context         map[string]string
	commands        map[string]json.RawMessage
	cdevents        json.RawMessage
}

// Condition is one entry of a trigger.<name> list, as Argo writes it.
type Condition struct {
	When        string   `json:"when,omitempty"`
	OncePer     string   `json:"oncePer,omitempty"`
	Send        []string `json:"send"`
	Description string   `json:"description,omitempty"`
}

type condition struct {
	Condition
	when, oncePer *vm.Program
}

// Subscription is one entry of the subscriptions key.
type Subscription struct {
	// Recipients are "service:recipient" ("slack:deploys", "github:").
	Recipients []string `json:"recipients"`
	// Triggers are the triggers subscribed to; empty means the default
	// triggers of each recipient's service.
	Triggers []string `json:"triggers,omitempty"`
	// Selector is a label selector on the Rollout ("team=shop,env!=dev");
	// empty selects every rollout.
	Selector string `json:"selector,omitempty"`
}

type subscription struct {
	recipients []notify.Destination
	triggers   []string
	selector   labels.Selector
}

type problems struct{ errs []error }

func (p *problems) add(path, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (p *problems) addErr(path string, wrapped error, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...), err: wrapped})
}

// Parse checks data (the ConfigMap's data) and returns the configuration,
// or every problem at once: an errors.Join of *FieldError, each wrapping
// ErrInvalid and naming its key (and the path inside the value). A
// missing secret also wraps ErrSecretNotFound and says where it was
// looked for; no error contains a secret's value. secrets may be nil when
// nothing references one.
func Parse(data map[string]string, secrets Secrets) (*Config, error) {
	c := &Config{
		serviceNames:    map[string]bool{},
		templates:       map[string]*tmpl{},
		triggers:        map[string][]condition{},
		serviceDefaults: map[string][]string{},
		context:         map[string]string{},
		commands:        map[string]json.RawMessage{},
	}
	p := &problems{}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// Templates and services first: triggers and subscriptions refer to them.
	var triggerKeys, defaultKeys []string
	subscriptionsKey := false
	for _, k := range keys {
		v := data[k]
		head, rest, _ := strings.Cut(k, ".")
		switch {
		case head == "service" && rest != "":
			c.parseService(p, k, rest, v, secrets)
		case head == "template" && rest != "":
			t, err := compileTemplate(k, rest, v)
			if err != nil {
				p.errs = append(p.errs, err...)
				continue
			}
			c.templates[rest] = t
		case head == "trigger" && rest != "":
			triggerKeys = append(triggerKeys, k)
		case head == "defaultTriggers":
			defaultKeys = append(defaultKeys, k)
		case k == "subscriptions":
			subscriptionsKey = true
		case k == "context":
			if err := yaml.UnmarshalStrict([]byte(v), &c.context); err != nil {
				p.add(k, "want a map of strings: %s", yamlMessage(err))
			}
		case head == "commands" && contains(CommandChats, rest):
			if raw := resolveJSON(p, k, v, secrets); raw != nil {
				c.commands[rest] = raw
			}
		case k == "cdevents":
			c.cdevents = resolveJSON(p, k, v, secrets)
		default:
			p.add(k, "unknown key (accepted: %s)", keyForms)
		}
	}
	for _, k := range triggerKeys {
		c.parseTrigger(p, k, data[k])
	}
	for _, k := range defaultKeys {
		var names []string
		if err := yaml.UnmarshalStrict([]byte(data[k]), &names); err != nil {
			p.add(k, "want a list of trigger names: %s", yamlMessage(err))
			continue
		}
		for i, n := range names {
			if _, ok := c.triggers[n]; !ok {
				p.add(fmt.Sprintf("%s[%d]", k, i), "no trigger named %q%s", n, known(c.Triggers()))
			}
		}
		if _, svc, ok := strings.Cut(k, "."); ok {
			if !c.serviceNames[svc] {
				p.add(k, "no service named %q%s", svc, known(c.ServiceNames()))
			}
			c.serviceDefaults[svc] = names
		} else {
			c.defaultTriggers = names
		}
	}
	if subscriptionsKey {
		c.parseSubscriptions(p, data["subscriptions"])
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return c, nil
}

func (c *Config) parseService(p *problems, key, rest, value string, secrets Secrets) {
	typ, name, named := strings.Cut(rest, ".")
	if !named {
		name = typ
	}
	if !contains(ServiceTypes, typ) {
		p.add(key, "no notification service of type %q (supported: %s)", typ, strings.Join(ServiceTypes, ", "))
		return
	}
	if name == "" || strings.Contains(name, ".") {
		p.add(key, "want service.<type> or service.<type>.<name>")
		return
	}
	if c.serviceNames[name] {
		p.add(key, "a second service named %q (service.<type>.<name> names a service <name>, service.<type> names it <type>)", name)
		return
	}
	raw := resolveJSON(p, key, value, secrets)
	if raw == nil {
		return
	}
	c.serviceNames[name] = true
	c.services = append(c.services, notify.ServiceConfig{Name: name, Type: typ, Options: raw})
}

// resolveJSON reads a YAML value as JSON with every $name resolved in
// its strings. It returns nil after adding the problems.
func resolveJSON(p *problems, key, value string, secrets Secrets) json.RawMessage {
	j, err := yaml.YAMLToJSON([]byte(value))
	if err != nil {
		p.add(key, "not YAML: %s", yamlMessage(err))
		return nil
	}
	var v any
	if err := json.Unmarshal(j, &v); err != nil {
		p.add(key, "not YAML: %v", err)
		return nil
	}
	if v == nil {
		v = map[string]any{}
	}
	ok := true
	v = walkStrings(v, key, func(path, s string) string {
		out, missing := resolve(s, secrets)
		for _, m := range missing {
			ok = false
			w := "no secret source"
			if secrets != nil {
				w = whereOf(secrets, m)
			}
			p.addErr(path, ErrSecretNotFound, "secret $%s not found (looked in: %s)", m, w)
		}
		return out
	})
	if !ok {
		return nil
	}
	out, err := json.Marshal(v)
	if err != nil {
		p.add(key, "%v", err)
		return nil
	}
	return out
}

// walkStrings replaces every string leaf of v with f(path, leaf).
func walkStrings(v any, path string, f func(path, s string) string) any {
	switch t := v.(type) {
	case string:
		return f(path, t)
	case map[string]any:
		ks := make([]string, 0, len(t))
		for k := range t {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		out := make(map[string]any, len(t))
		for _, k := range ks {
			out[k] = walkStrings(t[k], path+"."+k, f)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = walkStrings(e, fmt.Sprintf("%s[%d]", path, i), f)
		}
		return out
	}
	return v
}

func (c *Config) parseTrigger(p *problems, key, value string) {
	name := strings.TrimPrefix(key, "trigger.")
	var conds []Condition
	if err := yaml.UnmarshalStrict([]byte(value), &conds); err != nil {
		p.add(key, "want a list of {when, oncePer, send, description}: %s", yamlMessage(err))
		return
	}
	if len(conds) == 0 {
		p.add(key, "no conditions")
		return
	}
	var out []condition
	for i, cd := range conds {
		path := fmt.Sprintf("%s[%d]", key, i)
		cc := condition{Condition: cd}
		if len(cd.Send) == 0 {
			p.add(path+".send", "no templates to send")
		}
		for j, t := range cd.Send {
			if _, ok := c.templates[t]; !ok {
				p.add(fmt.Sprintf("%s.send[%d]", path, j), "no template named %q%s", t, known(c.templateNames()))
			}
		}
		var err error
		if cd.When != "" {
			if cc.when, err = compileExpr(cd.When); err != nil {
				p.add(path+".when", "%q: %s", cd.When, err)
			}
		}
		if cd.OncePer != "" {
			if cc.oncePer, err = compileExpr(cd.OncePer); err != nil {
				p.add(path+".oncePer", "%q: %s", cd.OncePer, err)
			}
		}
		out = append(out, cc)
	}
	c.triggers[name] = out
}

func (c *Config) parseSubscriptions(p *problems, value string) {
	var subs []Subscription
	if err := yaml.UnmarshalStrict([]byte(value), &subs); err != nil {
		p.add("subscriptions", "want a list of {recipients, triggers, selector}: %s", yamlMessage(err))
		return
	}
	for i, s := range subs {
		path := fmt.Sprintf("subscriptions[%d]", i)
		sub := subscription{triggers: s.Triggers, selector: labels.Everything()}
		if len(s.Recipients) == 0 {
			p.add(path+".recipients", "no recipients")
		}
		for j, r := range s.Recipients {
			svc, rcpt, ok := strings.Cut(r, ":")
			switch {
			case !ok:
				p.add(fmt.Sprintf("%s.recipients[%d]", path, j), "%q: want service:recipient (\"slack:deploys\"; \"github:\" for a service without recipients)", r)
			case !c.serviceNames[svc]:
				p.add(fmt.Sprintf("%s.recipients[%d]", path, j), "no service named %q%s", svc, known(c.ServiceNames()))
			default:
				sub.recipients = append(sub.recipients, notify.Destination{Service: svc, Recipient: strings.TrimSpace(rcpt)})
			}
		}
		for j, t := range s.Triggers {
			if _, ok := c.triggers[t]; !ok {
				p.add(fmt.Sprintf("%s.triggers[%d]", path, j), "no trigger named %q%s", t, known(c.Triggers()))
			}
		}
		if s.Selector != "" {
			sel, err := labels.Parse(s.Selector)
			if err != nil {
				p.add(path+".selector", "%q: %v", s.Selector, err)
			} else {
				sub.selector = sel
			}
		}
		c.subscriptions = append(c.subscriptions, sub)
	}
}

// yamlMessage is a YAML or JSON decoding error without the library's
// "error unmarshaling JSON: while decoding JSON:" preamble.
func yamlMessage(err error) string {
	s := err.Error()
	for _, pre := range []string{"error unmarshaling JSON: ", "while decoding JSON: ", "error converting YAML to JSON: ", "json: "} {
		s = strings.TrimPrefix(s, pre)
	}
	return s
}

func known(names []string) string {
	if len(names) == 0 {
		return " (none is configured)"
	}
	return " (configured: " + strings.Join(names, ", ") + ")"
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// Services returns the configured services, sorted by name, each with its
// options as JSON and every $secret resolved. HTTPClient and Logger are
// left for the caller.
func (c *Config) Services() []notify.ServiceConfig {
	out := make([]notify.ServiceConfig, len(c.services))
	copy(out, c.services)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ServiceNames returns the configured services' names, sorted.
func (c *Config) ServiceNames() []string {
	out := make([]string, 0, len(c.serviceNames))
	for n := range c.serviceNames {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Commands returns commands.<chat> ("slack", "teams") as JSON with its
// secrets resolved, or nil when the key is absent.
func (c *Config) Commands(chat string) json.RawMessage { return c.commands[chat] }

// CDEvents returns the cdevents key as JSON with its secrets resolved, or
// nil when absent.
func (c *Config) CDEvents() json.RawMessage { return c.cdevents }

// Context returns the context key: what templates see as .context.
func (c *Config) Context() map[string]string {
	out := make(map[string]string, len(c.context))
	for k, v := range c.context {
		out[k] = v
	}
	return out
}

// Triggers returns the configured triggers' names, sorted.
func (c *Config) Triggers() []string {
	out := make([]string, 0, len(c.triggers))
	for n := range c.triggers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Templates returns the configured templates' names, sorted.
func (c *Config) Templates() []string { return c.templateNames() }

func (c *Config) templateNames() []string {
	out := make([]string, 0, len(c.templates))
	for n := range c.templates {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// DefaultTriggers returns the triggers a subscription without triggers
// subscribes service to: defaultTriggers.<service> when set, else
// defaultTriggers.
func (c *Config) DefaultTriggers(service string) []string {
	if d, ok := c.serviceDefaults[service]; ok {
		return d
	}
	return c.defaultTriggers
}

// Destinations returns who is subscribed to trigger for a Rollout with
// these annotations and labels, deduplicated and sorted by service then
// recipient. As notifications-engine reads them:
//   - notifications.argoproj.io/subscribe.<trigger>.<service>:
//     "<recipient>[;<recipient>...]" subscribes to that trigger; an empty
//     value is one recipient "" (a webhook or GitHub service needs none);
//   - notifications.argoproj.io/subscribe.<service>: ... subscribes to the
//     service's default triggers (DefaultTriggers);
//   - each subscriptions entry whose selector matches labels, for its
//     triggers (or the default triggers of each recipient's service).
//
// Annotations naming a service that is not configured are left out: a
// message for it could not be sent.
func (c *Config) Destinations(trigger string, annotations, lbls map[string]string) []notify.Destination {
	seen := map[notify.Destination]bool{}
	var out []notify.Destination
	add := func(d notify.Destination) {
		if !c.serviceNames[d.Service] || seen[d] {
			return
		}
		seen[d] = true
		out = append(out, d)
	}
	for k, v := range annotations {
		rest, ok := strings.CutPrefix(k, SubscribeAnnotation)
		if !ok {
			continue
		}
		var svc string
		switch parts := strings.Split(rest, "."); len(parts) {
		case 1:
			svc = parts[0]
			if !contains(c.DefaultTriggers(svc), trigger) {
				continue
			}
		case 2:
			if parts[0] != trigger {
				continue
			}
			svc = parts[1]
		default:
			continue
		}
		for _, r := range Recipients(v) {
			add(notify.Destination{Service: svc, Recipient: r})
		}
	}
	set := labels.Set(lbls)
	for _, s := range c.subscriptions {
		if !s.selector.Matches(set) {
			continue
		}
		for _, d := range s.recipients {
			triggers := s.triggers
			if len(triggers) == 0 {
				triggers = c.DefaultTriggers(d.Service)
			}
			if contains(triggers, trigger) {
				add(d)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Recipient < out[j].Recipient
	})
	return out
}

// Recipients splits an annotation's value: recipients separated by ';'
// (',' too, as older notifications-engine versions accepted), trimmed; an
// empty value is the one recipient "".
func Recipients(v string) []string {
	var out []string
	for _, r := range strings.FieldsFunc(v, func(r rune) bool { return r == ';' || r == ',' }) {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return []string{""}
	}
	return out
}
