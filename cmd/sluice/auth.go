package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sluicehq/sluice/internal/assembly"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/gateway/auth"
)

// newAuthCmd makes the secrets of the gateway's auth file
// (docs/gateway.md, "Who may do what"), so that the file holds hashes,
// never passwords or tokens.
func newAuthCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "auth",
		Short: "Make the hashes of the gateway's auth file, and the NATS users' permissions",
	}
	c.AddCommand(&cobra.Command{
		Use:   "hash-password",
		Short: "Read a password on standard input and print its bcrypt hash, for a user's passwordHash",
		Example: `  sluice auth hash-password            # asks for it, without echo
  printf %s "$PASSWORD" | sluice auth hash-password`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := readSecret(cmd, "Password: ")
			if err != nil {
				return err
			}
			h, err := auth.HashPassword(pw)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), h)
			return nil
		},
	})
	var generate bool
	token := &cobra.Command{
		Use:   "hash-token",
		Short: "Read a token on standard input and print its sha256:<hex> digest, for a token's hash",
		Long: `Read a bearer token on standard input and print its digest, sha256:<hex>,
for a token's hash in the auth file. With --generate, make a new random
token instead and print it (give it to the caller, once) and its digest
(put it in the file).`,
		Example: `  sluice auth hash-token --generate
  printf %s "$TOKEN" | sluice auth hash-token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if generate {
				tok := auth.NewToken()
				fmt.Fprintf(out, "token: %s\nhash:  %s\n", tok, auth.HashToken(tok))
				return nil
			}
			tok, err := readSecret(cmd, "Token: ")
			if err != nil {
				return err
			}
			fmt.Fprintln(out, auth.HashToken(tok))
			return nil
		},
	}
	token.Flags().BoolVar(&generate, "generate", false, "make a new random token and print it with its digest")
	c.AddCommand(token)
	c.AddCommand(newNATSPermissionsCmd())
	return c
}

// newNATSPermissionsCmd prints deploy/nats/permissions.conf, with a NATS
// user of its own for each bot named (docs/security.md, "Bots").
func newNATSPermissionsCmd() *cobra.Command {
	var specs []string
	c := &cobra.Command{
		Use:   "nats-permissions [--bot NAME:viewer|operator ...]",
		Short: "Print the nats-server users and permissions of every identity, with a user of its own for each bot",
		Long: `Print the nats-server configuration fragment that deploy/nats/permissions.conf
holds: one user per Sluice identity with exactly its permissions, each
password from the server's environment (SLUICE_NATS_<USER>_PASSWORD).

Each --bot NAME:ROLE adds a user NAME for a chatops bot, dashboard or CI job
that follows rollouts. Its durable consumer on SLUICE_STATUS is the one
named NAME, and only it may create, read, pull from or delete that consumer:
the operator, the viewer and every other bot are denied it. ROLE viewer only
reads; ROLE operator may also answer with commands (promote, abort, ...).`,
		Example: `  sluice auth nats-permissions > deploy/nats/permissions.conf
  sluice auth nats-permissions --bot chatops:operator --bot release-board:viewer > permissions.conf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var bots []events.Bot
			for _, spec := range specs {
				name, role, ok := strings.Cut(spec, ":")
				if !ok || (role != "viewer" && role != "operator") {
					return usageError{fmt.Errorf("--bot %q: want NAME:viewer or NAME:operator", spec)}
				}
				bots = append(bots, events.Bot{Name: name, Answers: role == "operator"})
			}
			conf, err := assembly.NATSConfig(bots...)
			if err != nil {
				return usageError{fmt.Errorf("--bot: %w", err)}
			}
			_, err = io.WriteString(cmd.OutOrStdout(), conf)
			return err
		},
	}
	c.Flags().StringArrayVar(&specs, "bot", nil, "add a NATS user NAME for a bot, with ROLE viewer (reads) or operator (also answers), owning the durable consumer NAME on SLUICE_STATUS (repeatable)")
	return c
}

// readSecret reads one line of standard input without its line ending;
// on a terminal it prompts and does not echo.
func readSecret(cmd *cobra.Command, prompt string) (string, error) {
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(cmd.ErrOrStderr(), prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", err
		}
		return nonEmpty(string(b))
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return nonEmpty(strings.TrimRight(line, "\r\n"))
}

func nonEmpty(s string) (string, error) {
	if s == "" {
		return "", usageError{errors.New("nothing on standard input: pipe the secret in, or run on a terminal to be asked")}
	}
	return s, nil
}
