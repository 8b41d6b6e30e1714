package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/events"
)

// addNamespaceFlag registers -n/--namespace on cmd.
func addNamespaceFlag(cmd *cobra.Command, ns *string) {
	addNamespaceFlagOf(cmd, ns, nounRollout)
}

// addNamespaceFlagOf registers -n/--namespace, the namespace of the noun
// (rollout, experiment) cmd acts on.
func addNamespaceFlagOf(cmd *cobra.Command, ns *string, noun string) {
	cmd.Flags().StringVarP(ns, "namespace", "n", "default", "namespace of the "+noun)
}

// rolloutRef reads a rollout argument: "name" in --namespace, or
// "namespace/name". An invalid name is a usage error.
func rolloutRef(arg, namespace string) (events.Ref, error) {
	return objectRef(nounRollout, arg, namespace)
}

// objectRef reads the argument naming a noun (rollout, experiment) as
// rolloutRef does.
func objectRef(noun, arg, namespace string) (events.Ref, error) {
	r := events.Ref{Namespace: namespace, Name: arg}
	if ns, name, ok := strings.Cut(arg, "/"); ok {
		r = events.Ref{Namespace: ns, Name: name}
	}
	if err := r.Validate(); err != nil {
		return r, usageError{fmt.Errorf("%s %q: %w", noun, arg, err)}
	}
	return r, nil
}
