package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"
	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/services/notifier/notify"
)

// funcs are the template functions notifications-engine gives templates:
// sprig's, without env and expandenv (a template must not read the
// notifier's environment, where secrets are).
var funcs = func() template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	return f
}()

// tmpl is a compiled template.<name>: every string field of the
// notification compiled, keyed by its path inside the value.
type tmpl struct {
	name string
	// raw is the value as JSON-shaped data; its string leaves are the
	// fields' sources.
	raw    any
	fields map[string]*template.Template
}

// compileTemplate checks a template.<name> value: its fields are
// notify.Notification's (strictly: an unknown field fails) and every
// string field compiles as a Go template with funcs.
func compileTemplate(key, name, value string) (*tmpl, []error) {
	var shape notify.Notification
	if err := yaml.UnmarshalStrict([]byte(value), &shape); err != nil {
		return nil, []error{&FieldError{Path: key, Msg: fmt.Sprintf("not a notification template (fields: message, slack, teams, email, webhook, github): %s", yamlMessage(err))}}
	}
	j, err := yaml.YAMLToJSON([]byte(value))
	if err != nil {
		return nil, []error{&FieldError{Path: key, Msg: yamlMessage(err)}}
	}
	t := &tmpl{name: name, fields: map[string]*template.Template{}}
	if err := json.Unmarshal(j, &t.raw); err != nil {
		return nil, []error{&FieldError{Path: key, Msg: err.Error()}}
	}
	var errs []error
	walkStrings(t.raw, "", func(path, s string) string {
		path = strings.TrimPrefix(path, ".")
		gt, err := template.New(key + "." + path).Funcs(funcs).Parse(s)
		if err != nil {
			errs = append(errs, &FieldError{Path: key + "." + path, Msg: templateMessage(err)})
			return s
		}
		t.fields[path] = gt
		return s
	})
	return t, errs
}

// templateMessage drops text/template's "template: <name>:" prefix: the
// FieldError's path names the field.
func templateMessage(err error) string {
	s := err.Error()
	if rest, ok := strings.CutPrefix(s, "template: "); ok {
		if _, after, ok := strings.Cut(rest, ":"); ok {
			return strings.TrimSpace(after)
		}
	}
	return s
}

// Render renders the named templates with vars (what templates see:
// rollout, context, sluice) and merges them into one Notification in
// order: a field a later template sets wins; webhook requests are merged
// by webhook name. An error names the template and the field, and wraps
// ErrRender.
func (c *Config) Render(templates []string, vars map[string]any) (notify.Notification, error) {
	var n notify.Notification
	for _, name := range templates {
		t, ok := c.templates[name]
		if !ok {
			return notify.Notification{}, fmt.Errorf("%w: no template named %q", ErrRender, name)
		}
		var rerr error
		out := walkStrings(t.raw, "", func(path, s string) string {
			path = strings.TrimPrefix(path, ".")
			if rerr != nil {
				return ""
			}
			var b strings.Builder
			if err := t.fields[path].Execute(&b, vars); err != nil {
				rerr = fmt.Errorf("%w: template.%s.%s: %s", ErrRender, name, path, templateMessage(err))
				return ""
			}
			return b.String()
		})
		if rerr != nil {
			return notify.Notification{}, rerr
		}
		var one notify.Notification
		j, err := json.Marshal(out)
		if err == nil {
			err = json.Unmarshal(j, &one)
		}
		if err != nil {
			// A bool field rendered from a string (notifyBroadcast: "{{...}}").
			return notify.Notification{}, fmt.Errorf("%w: template.%s: %v", ErrRender, name, err)
		}
		merge(&n, one)
	}
	return n, nil
}

// ErrRender is wrapped by a template that fails to render.
var ErrRender = errors.New("cannot render template")

// merge sets on n every field set in m.
func merge(n *notify.Notification, m notify.Notification) {
	if m.Message != "" {
		n.Message = m.Message
	}
	mergePtr(&n.Slack, m.Slack)
	mergePtr(&n.Teams, m.Teams)
	mergePtr(&n.Email, m.Email)
	mergePtr(&n.GitHub, m.GitHub)
	for name, w := range m.Webhook {
		if n.Webhook == nil {
			n.Webhook = map[string]notify.Webhook{}
		}
		old := n.Webhook[name]
		mergeStruct(&old, w)
		n.Webhook[name] = old
	}
}

func mergePtr[T any](dst **T, src *T) {
	if src == nil {
		return
	}
	if *dst == nil {
		v := *src
		*dst = &v
		return
	}
	mergeStruct(*dst, *src)
}

// mergeStruct overlays src's non-zero fields on dst through their JSON
// (omitempty drops the zero ones).
func mergeStruct[T any](dst *T, src T) {
	j, err := json.Marshal(src)
	if err != nil {
		return
	}
	_ = json.Unmarshal(j, dst)
}

// Outcome is one condition of a trigger evaluated.
type Outcome struct {
	// Index is the condition's position in the trigger's list.
	Index int
	// Triggered: the condition has no when, or its when is true.
	Triggered bool
	// OncePer is the rendered oncePer value ("" when unset): a
	// notification is sent once per distinct value, per destination.
	OncePer     string
	Templates   []string
	Description string
}

// ErrNoTrigger is returned for a trigger the configuration does not have.
var ErrNoTrigger = errors.New("no such trigger")

// Conditions evaluates trigger's conditions with vars. A condition whose
// when or oncePer fails to evaluate is not triggered, and the error
// (errors.Join of one per condition, naming it) is returned with the
// outcomes. An unknown trigger is ErrNoTrigger.
func (c *Config) Conditions(trigger string, vars map[string]any) ([]Outcome, error) {
	conds, ok := c.triggers[trigger]
	if !ok {
		return nil, fmt.Errorf("%w: %q%s", ErrNoTrigger, trigger, known(c.Triggers()))
	}
	var errs []error
	out := make([]Outcome, 0, len(conds))
	for i, cd := range conds {
		o := Outcome{Index: i, Triggered: true, Templates: append([]string(nil), cd.Send...), Description: cd.Description}
		if cd.when != nil {
			v, err := expr.Run(cd.when, vars)
			b, isBool := v.(bool)
			switch {
			case err != nil:
				o.Triggered = false
				errs = append(errs, fmt.Errorf("trigger.%s[%d].when %q: %s", trigger, i, cd.When, exprMessage(err)))
			case !isBool:
				o.Triggered = false
				errs = append(errs, fmt.Errorf("trigger.%s[%d].when %q: got %T, want a bool", trigger, i, cd.When, v))
			default:
				o.Triggered = b
			}
		}
		if cd.oncePer != nil {
			v, err := expr.Run(cd.oncePer, vars)
			if err != nil {
				o.Triggered = false
				errs = append(errs, fmt.Errorf("trigger.%s[%d].oncePer %q: %s", trigger, i, cd.OncePer, exprMessage(err)))
			} else if v != nil {
				o.OncePer = fmt.Sprint(v)
			}
		}
		out = append(out, o)
	}
	return out, errors.Join(errs...)
}

// compileExpr compiles a when or oncePer expression. Variables are not
// known before an event, so they are not checked here (as in
// notifications-engine); a syntax error or an unknown function is.
func compileExpr(src string) (*vm.Program, error) {
	p, err := expr.Compile(src, expr.AllowUndefinedVariables())
	if err != nil {
		return nil, errors.New(exprMessage(err))
	}
	return p, nil
}

// exprMessage is an expr error without the source excerpt expr adds.
func exprMessage(err error) string {
	var fe *file.Error
	if errors.As(err, &fe) {
		return fe.Message
	}
	return err.Error()
}
