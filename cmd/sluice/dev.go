package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/embedded"
)

// devConfig is `sluice dev`'s configuration.
type devConfig struct {
	// NATSListen is where the embedded NATS server listens.
	NATSListen string
	// StateDir keeps JetStream's files (and, later, the local platform's).
	StateDir string
	// SyncInterval is JetStream's fsync interval; 0 keeps the server's default.
	SyncInterval time.Duration
	// Bus tunes the streams; development defaults to R1 on file storage.
	Bus events.BusConfig
}

func (c devConfig) validate() error {
	host, port, err := net.SplitHostPort(c.NATSListen)
	if err != nil {
		return fmt.Errorf("--nats-listen %q: want host:port: %v", c.NATSListen, err)
	}
	if _, err := strconv.Atoi(port); err != nil || host == "" {
		return fmt.Errorf("--nats-listen %q: want host:port with a numeric port", c.NATSListen)
	}
	if c.StateDir == "" {
		return fmt.Errorf("--state-dir must not be empty")
	}
	return nil
}

func newDevCmd() *cobra.Command {
	var cfg devConfig
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run Sluice in one process for development",
		Long: `Run Sluice in one process: an embedded NATS server with JetStream on disk
under --state-dir, with every Sluice stream provisioned. Ctrl-C stops it
cleanly; starting it again finds every event it had.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.validate(); err != nil {
				return usageError{err}
			}
			return runDev(cmd.Context(), cfg, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.NATSListen, "nats-listen", "127.0.0.1:4222", "address of the embedded NATS server")
	f.StringVar(&cfg.StateDir, "state-dir", ".sluice", "directory for Sluice's state (JetStream files)")
	f.DurationVar(&cfg.SyncInterval, "sync-interval", 0, "JetStream fsync interval (0: the server's default of 2m; see docs/events.md)")
	cfg.Bus.AddFlags(f)
	return cmd
}

func runDev(ctx context.Context, cfg devConfig, out interface{ Write([]byte) (int, error) }) error {
	host, portStr, _ := net.SplitHostPort(cfg.NATSListen)
	port, _ := strconv.Atoi(portStr)
	storeDir := filepath.Join(cfg.StateDir, "nats")
	if err := os.MkdirAll(storeDir, 0o755); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	srv, err := embedded.Start(embedded.Options{Host: host, Port: port, StoreDir: storeDir, SyncInterval: cfg.SyncInterval})
	if err != nil {
		return err
	}
	defer srv.Shutdown()

	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client, err := events.Connect(cctx, events.ConnConfig{URLs: []string{srv.ClientURL()}, Name: "sluice-dev"}, events.WithLogger(slog.Default()))
	if err != nil {
		return err
	}
	defer client.Close()
	if err := client.Provision(cctx, cfg.Bus); err != nil {
		return err
	}
	fmt.Fprintf(out, "sluice dev: NATS with JetStream listening on %s (state in %s)\n", srv.ClientURL(), storeDir)
	fmt.Fprintf(out, "sluice dev: streams %s, %s, %s, %s, %s provisioned\n",
		events.StreamCommands, events.StreamStatus, events.StreamTasks, events.StreamResults, events.StreamDeadLetter)
	fmt.Fprintln(out, "sluice dev: press Ctrl-C to stop")
	<-ctx.Done()
	fmt.Fprintln(out, "sluice dev: stopping")
	return nil
}
