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

	"github.com/sluicehq/sluice/services/gateway/auth"
)

// newAuthCmd makes the secrets of the gateway's auth file
// (docs/gateway.md, "Who may do what"), so that the file holds hashes,
// never passwords or tokens.
func newAuthCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "auth",
		Short: "Make the hashes of the gateway's auth file (passwords, tokens)",
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
