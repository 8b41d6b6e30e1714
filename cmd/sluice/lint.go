package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/spec"
)

func newLintCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "lint -f FILE",
		Short: "Check Rollout and AnalysisTemplate manifests",
		Long: `Check Rollout, AnalysisTemplate and ClusterAnalysisTemplate manifests
(argoproj.io/v1alpha1, multi-document YAML or JSON) as Sluice would on
apply. Prints every problem with its field path and exits 1, or prints
"valid". Unknown fields are warnings: they do not fail the check.
FILE "-" reads standard input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageError{fmt.Errorf("-f FILE is required")}
			}
			data, err := readInput(cmd.InOrStdin(), file)
			if err != nil {
				return err
			}
			report := spec.Lint(data)
			fmt.Fprintln(cmd.OutOrStdout(), report.String())
			if !report.Valid() {
				return errSilentFailure
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "manifest file, or - for standard input")
	return cmd
}

func readInput(stdin io.Reader, file string) ([]byte, error) {
	if file == "-" {
		return io.ReadAll(stdin)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return data, nil
}
