// Command sluice is Sluice's command-line tool and its all-in-one
// development mode (`sluice dev`).
//
// Exit codes: 0 success, 1 failure (an error the command reports), 2 usage
// error (unknown command or flag, missing argument).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/buildinfo"
	"github.com/sluicehq/sluice/pkg/events"
)

// Exit codes scripts can rely on.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// usageError marks an error as the caller's misuse of the command line.
type usageError struct{ error }

// errSilentFailure fails a command that has already printed why.
var errSilentFailure = errors.New("")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the CLI with args and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	if err != errSilentFailure {
		fmt.Fprintln(root.ErrOrStderr(), "sluice:", err)
	}
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
		return exitUsage
	}
	return exitFail
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "sluice",
		Short:         "Progressive delivery over CloudEvents on NATS JetStream",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       buildinfo.Version(),
	}
	root.SetVersionTemplate("sluice {{.Version}}\n")
	// Cobra reports unknown flags and bad arguments through these; mark them
	// as usage errors so the exit code is 2.
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	var conn events.ConnConfig
	conn.AddFlags(root.PersistentFlags())
	root.AddCommand(newDevCmd(), newVersionCmd(), newHistoryCmd(&conn), newLintCmd(&conn),
		newApplyCmd(&conn), newGetCmd(&conn), newListCmd(&conn), newEventsCmd(&conn), newLogsCmd(&conn),
		newNotificationsCmd(&conn))
	root.AddCommand(newOperatorCommands(&conn)...)
	root.AddCommand(newAuthCmd())
	for _, c := range root.Commands() {
		wrapArgs(c)
	}
	return root
}

// wrapArgs turns argument-validation failures of c and its subcommands
// into usage errors.
func wrapArgs(c *cobra.Command) {
	for _, sub := range c.Commands() {
		wrapArgs(sub)
	}
	if c.Args == nil {
		return
	}
	validate := c.Args
	c.Args = func(cmd *cobra.Command, args []string) error {
		if err := validate(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
