package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/events"
)

// addNamespaceFlag registers -n/--namespace on cmd.
func addNamespaceFlag(cmd *cobra.Command, ns *string) {
	cmd.Flags().StringVarP(ns, "namespace", "n", "default", "namespace of the rollout")
}

// rolloutRef reads a rollout argument: "name" in --namespace, or
// "namespace/name". An invalid name is a usage error.
func rolloutRef(arg, namespace string) (events.Ref, error) {
	r := events.Ref{Namespace: namespace, Name: arg}
	if ns, name, ok := strings.Cut(arg, "/"); ok {
		r = events.Ref{Namespace: ns, Name: name}
	}
	if err := r.Validate(); err != nil {
		return r, usageError{fmt.Errorf("rollout %q: %w", arg, err)}
	}
	return r, nil
}
