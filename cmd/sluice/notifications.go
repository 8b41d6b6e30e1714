package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/notifier/config"
	"github.com/sluicehq/sluice/services/notifier/notify"
	"github.com/sluicehq/sluice/services/notifier/trigger"
	"github.com/sluicehq/sluice/services/orchestrator"
)

func newNotificationsCmd(conn *events.ConnConfig) *cobra.Command {
	c := &cobra.Command{
		Use:   "notifications",
		Short: "Check a notification configuration, and see what a trigger would send",
		Long: `Work with the notifier's configuration (Argo Rollouts'
argo-rollouts-notification-configmap, in a file): check it, and render
what a trigger would send for a rollout's latest status event, sending
nothing.`,
	}
	c.AddCommand(newNotificationsCheckCmd(), newNotificationsTestCmd(conn))
	return c
}

// notificationFlags are the flags that read a configuration file.
type notificationFlags struct {
	file, secretsDir string
}

func (f *notificationFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.file, "config", "", "the configuration file: the ConfigMap (and optionally a Secret) as sluice-notifier --config takes it (required)")
	cmd.Flags().StringVar(&f.secretsDir, "secrets-dir", "", "a directory with one file per secret ($name references), as sluice-notifier --secrets-dir")
}

// load reads and checks the file as the notifier does: secrets from the
// file's Secret, then --secrets-dir, then SLUICE_SECRET_<NAME>.
func (f *notificationFlags) load() (*config.Config, error) {
	if f.file == "" {
		return nil, usageError{errors.New("--config FILE is required")}
	}
	data, err := os.ReadFile(f.file)
	if err != nil {
		return nil, err
	}
	cm, secret, err := config.ParseFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.file, err)
	}
	var dir config.Secrets
	if f.secretsDir != "" {
		dir = config.Dir(f.secretsDir)
	}
	return config.Parse(cm, config.Chain(config.Map(secret), dir, config.Env(os.Getenv)))
}

func newNotificationsCheckCmd() *cobra.Command {
	var f notificationFlags
	cmd := &cobra.Command{
		Use:   "check --config FILE",
		Short: "Check a notification configuration: every problem, or a summary",
		Long: `Check a notification configuration file as sluice-notifier reads it: YAML,
key forms, service types, templates, trigger conditions, subscriptions
and that every $secret resolves. Prints every problem with its path and
exits 1, or prints what is configured and exits 0.`,
		Example: `  sluice notifications check --config notifications.yaml --secrets-dir /run/secrets`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.load()
			var ue usageError
			if errors.As(err, &ue) || err != nil && !errors.Is(err, config.ErrInvalid) {
				return err
			}
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s:\n", f.file)
				for _, line := range strings.Split(err.Error(), "\n") {
					fmt.Fprintf(cmd.ErrOrStderr(), "  %s\n", line)
				}
				return errSilentFailure
			}
			printSummary(cmd.OutOrStdout(), f.file, cfg)
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func printSummary(w io.Writer, file string, cfg *config.Config) {
	fmt.Fprintf(w, "%s is valid.\n", file)
	var svcs []string
	for _, s := range cfg.Services() {
		svcs = append(svcs, s.Name+" ("+s.Type+")")
	}
	list := func(label string, items []string) {
		if len(items) == 0 {
			fmt.Fprintf(w, "%-17s none\n", label+":")
			return
		}
		fmt.Fprintf(w, "%-17s %s\n", label+":", strings.Join(items, ", "))
	}
	list("services", svcs)
	list("triggers", cfg.Triggers())
	list("templates", cfg.Templates())
	list("default triggers", cfg.DefaultTriggers(""))
	var unknown []string
	for _, t := range cfg.Triggers() {
		if !trigger.Known(t) {
			unknown = append(unknown, t)
		}
	}
	if len(unknown) > 0 {
		fmt.Fprintf(w, "note: no status event fires %s (Sluice fires: %s)\n", strings.Join(unknown, ", "), strings.Join(trigger.All(), ", "))
	}
	var chats []string
	for _, c := range config.CommandChats {
		if cfg.Commands(c) != nil {
			chats = append(chats, c)
		}
	}
	list("chat commands", chats)
	if cfg.CDEvents() != nil {
		fmt.Fprintln(w, "cdevents:         configured")
	}
}

func newNotificationsTestCmd(conn *events.ConnConfig) *cobra.Command {
	var f notificationFlags
	var ns, output, dashboardURL string
	var recipients []string
	cmd := &cobra.Command{
		Use:   "test <trigger> <rollout> --config FILE",
		Short: "Show what a trigger would send for a rollout's latest status event; sends nothing",
		Long: `Evaluate a trigger of the configuration against a rollout's latest status
event and its manifest, as the notifier would (like Argo's
"kubectl argo rollouts notifications template notify"), and print, for
each destination subscribed to the trigger (or each --recipient), the
notification every condition that holds would send. Nothing is sent.

Exits 1 when the trigger is not configured, the rollout does not exist,
or nobody is subscribed to the trigger and no --recipient is given.`,
		Example: `  sluice notifications test on-rollout-completed shop/web --config notifications.yaml
  sluice notifications test on-rollout-paused web --config notifications.yaml --recipient slack:deploys -o json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			tr := args[0]
			r, err := rolloutRef(args[1], ns)
			if err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			var dests []notify.Destination
			for _, rc := range recipients {
				svc, to, ok := strings.Cut(rc, ":")
				if !ok || svc == "" {
					return usageError{fmt.Errorf("--recipient %q: want service:recipient (slack:deploys; github: for a service without recipients)", rc)}
				}
				dests = append(dests, notify.Destination{Service: svc, Recipient: to})
			}
			cfg, err := f.load()
			if err != nil {
				return err
			}
			if !containsString(cfg.Triggers(), tr) {
				hint := ""
				if trigger.Known(tr) {
					hint = fmt.Sprintf("; add trigger.%s to the configuration (Argo's catalog, notifications-install.yaml, has Argo's)", tr)
				}
				return fmt.Errorf("no trigger named %q in %s (configured: %s)%s", tr, f.file, strings.Join(cfg.Triggers(), ", "), hint)
			}
			for _, d := range dests {
				if !containsString(cfg.ServiceNames(), d.Service) {
					return fmt.Errorf("--recipient %s: no service named %q in %s (configured: %s)", d, d.Service, f.file, strings.Join(cfg.ServiceNames(), ", "))
				}
			}
			ctx := cmd.Context()
			client, err := connect(ctx, *conn)
			if err != nil {
				return err
			}
			defer client.Close()
			ev, data, m, err := lastStatusEvent(ctx, client, r)
			if err != nil {
				return err
			}
			if len(dests) == 0 {
				dests = cfg.Destinations(tr, m.Annotations, m.Labels)
			}
			if len(dests) == 0 {
				return fmt.Errorf("nobody is subscribed to %s for %s: annotate the Rollout with %s%s.<service>: <recipient> (or %s<service> with the service's defaultTriggers), add a subscriptions entry to the configuration, or pass --recipient service:recipient",
					tr, r, config.SubscribeAnnotation, tr, config.SubscribeAnnotation)
			}
			vars := trigger.Vars(trigger.Rollout(m, data), ev, data, cfg.Context(), dashboardURL)
			outcomes, condErr := cfg.Conditions(tr, vars)
			out := cmd.OutOrStdout()
			if output == outputText {
				fmt.Fprintf(out, "%s for %s, from its latest status event %s (%s):\n", tr, r, eventName(ev.Type()), ev.ID())
			}
			sent := 0
			for _, o := range outcomes {
				if !o.Triggered {
					if output == outputText {
						fmt.Fprintf(out, "condition %d: not triggered (sends %s)\n", o.Index, strings.Join(o.Templates, ", "))
					}
					continue
				}
				n, err := cfg.Render(o.Templates, vars)
				if err != nil {
					return err
				}
				for _, d := range dests {
					sent++
					msg := notify.Message{
						Rollout: r, Trigger: tr, Templates: o.Templates, Destination: d, Notification: n,
						Event: notify.EventRef{ID: ev.ID(), Type: ev.Type(), Actor: events.Extension(ev, events.ExtActor), Time: ev.Time()},
						Phase: data.Status.Phase,
					}
					if output == outputJSON {
						if err := writeJSONLine(out, msg); err != nil {
							return err
						}
						continue
					}
					printMessage(out, o, msg)
				}
			}
			if condErr != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "sluice: %v\n", condErr)
			}
			if sent == 0 && output == outputText {
				fmt.Fprintln(out, "Nothing would be sent: no condition holds.")
			}
			return nil
		},
	}
	f.add(cmd)
	addNamespaceFlag(cmd, &ns)
	addOutputFlag(cmd, &output, "one notify.Message per destination and line, as the notifier queues it")
	cmd.Flags().StringArrayVar(&recipients, "recipient", nil, "send to service:recipient instead of the rollout's subscriptions (repeatable)")
	cmd.Flags().StringVar(&dashboardURL, "dashboard-url", "", "the dashboard's URL, for .sluice.dashboardURL, as sluice-notifier --dashboard-url")
	return cmd
}

// lastStatusEvent reads r's latest status event and the manifest of its
// revision.
func lastStatusEvent(ctx context.Context, client *events.Client, r events.Ref) (events.Event, events.StatusData, *spec.Rollout, error) {
	var data events.StatusData
	s, err := client.JetStream().Stream(ctx, events.StreamStatus)
	if err != nil {
		return events.Event{}, data, nil, err
	}
	raw, err := s.GetLastMsgForSubject(ctx, events.StatusSubject(r))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return events.Event{}, data, nil, fmt.Errorf("rollout %s not found: no status events (was it applied, and is the orchestrator running?)", r)
	}
	if err != nil {
		return events.Event{}, data, nil, err
	}
	ev, err := events.Decode(raw.Data, raw.Header)
	if err != nil {
		return events.Event{}, data, nil, fmt.Errorf("the latest status event of %s: %w", r, err)
	}
	if err := events.DecodeData(ev, &data); err != nil {
		return events.Event{}, data, nil, fmt.Errorf("the latest status event of %s: %w", r, err)
	}
	rd, err := orchestrator.NewReader(ctx, client)
	if err != nil {
		return events.Event{}, data, nil, err
	}
	m, err := rd.Manifest(ctx, r, data.Status.PodHash)
	if errors.Is(err, orchestrator.ErrNoRollout) {
		return events.Event{}, data, nil, fmt.Errorf("rollout %s does not exist (its latest status event is %s)", r, eventName(ev.Type()))
	}
	if err != nil {
		return events.Event{}, data, nil, err
	}
	return ev, data, m, nil
}

// printMessage shows one notification for people: the destination, then
// every rendered field by its template path, a multi-line value as an
// indented block.
func printMessage(w io.Writer, o config.Outcome, m notify.Message) {
	fmt.Fprintf(w, "\n→ %s (condition %d, templates %s)\n", m.Destination, o.Index, strings.Join(o.Templates, ", "))
	b, err := json.Marshal(m.Notification)
	var fields any
	if err == nil {
		err = json.Unmarshal(b, &fields)
	}
	if err != nil {
		fmt.Fprintf(w, "  %v\n", err)
		return
	}
	printFields(w, "", fields)
}

func printFields(w io.Writer, path string, v any) {
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			printFields(w, p, t[k])
		}
	case string:
		if !strings.Contains(t, "\n") {
			fmt.Fprintf(w, "  %s: %s\n", path, t)
			return
		}
		fmt.Fprintf(w, "  %s: |\n", path)
		for _, line := range strings.Split(strings.TrimRight(t, "\n"), "\n") {
			fmt.Fprintf(w, "    %s\n", line)
		}
	default:
		fmt.Fprintf(w, "  %s: %v\n", path, t)
	}
}

func containsString(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
