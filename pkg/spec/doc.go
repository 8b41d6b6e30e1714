// Package spec reads, defaults and validates the manifests Sluice accepts:
// Argo Rollouts' Rollout, AnalysisTemplate, ClusterAnalysisTemplate,
// AnalysisRun and Experiment of apiVersion argoproj.io/v1alpha1, in YAML or
// JSON, with
// Argo's field names, so that a manifest written for Argo Rollouts needs no
// change. It does no I/O.
//
// # Use
//
//	docs, err := spec.Decode(data) // every document; err joins *DocumentError
//	for _, d := range docs {
//		// d.Warnings: unknown fields, with their paths
//		if errs := d.Object.Validate(); len(errs) > 0 { ... } // every problem at once
//		d.Object.SetDefaults()                                // then Argo's defaults
//	}
//
// Lint does all of that for `sluice lint` and renders one line per problem.
//
// Decoding matches keys case-sensitively, as Kubernetes does. A key that
// matches no field is a Warning ("spec.strategy.canary.stepz: unknown
// field (did you mean "steps"?)"), never dropped silently; a document of
// another apiVersion or kind is a *DocumentError naming the document's
// number and kind. Validation returns a field.ErrorList in the API server's
// style: "spec.strategy.canary.steps[2].setWeight: Invalid value: 120: must
// be between 0 and 100".
//
// # Supported, and deliberately not
//
// Strategies: canary (setWeight, pause, analysis, experiment,
// setCanaryScale, setHeaderRoute and setMirrorRoute steps, background
// analysis) and
// blue/green (pre- and post-promotion analysis). Traffic routers: NGINX,
// ALB, Istio, SMI and Gateway API, several at once if wanted; without a
// router, canary weights are replica ratios.
//
// Gateway API is configured the way Argo Rollouts configures it, as its
// plugin, so one manifest works with both:
//
//	trafficRouting:
//	  plugins:
//	    argoproj-labs/gatewayAPI:
//	      httpRoute: web        # or httpRoutes: [{name: web, useHeaderRoutes: true}]
//	      namespace: default    # optional; the rollout's namespace
//
// TrafficRouting.GatewayAPI returns that configuration typed. No second,
// Sluice-only spelling exists: two spellings of one setting would have to
// be kept in agreement forever.
//
// Sluice's canary judge is addressed the same way, as the metric plugin
// JudgePlugin (`provider: plugin: sluice/judge: {...}`, typed as Judge by
// JudgeOf); Validate checks its block, unknown fields included, and each
// of its metrics' inner provider blocks (docs/judge.md).
//
// Parsed so that Argo manifests decode, but rejected by Validate as not
// supported: plugin steps, experiment template weights with a router that
// cannot route to a template (see ExperimentWeightRouters), the Ambassador, App Mesh, Traefik
// and Apisix routers, router plugins other than Gateway API, pingPong,
// workloadRef in an event (the kube platform resolves it for Rollout objects
// in the cluster, copying the Deployment's template), and the metric providers other than prometheus and web
// (`unsupported provider "datadog"`). A key under trafficRouting that names
// no router at all is rejected too: skipping a router the author configured
// would route traffic they did not intend.
//
// A Rollout's status is accepted and ignored; Sluice keeps rollout state
// itself. Pod specs are not validated beyond what Sluice relies on (at least
// one container, named uniquely): the API server or the local platform
// judges the rest.
//
// # Defaults
//
// SetDefaults applies Argo Rollouts' defaults to what a manifest leaves
// unset and never changes what it sets, zero values included: unset fields
// are nil pointers, as in Argo's types. See Rollout.SetDefaults and
// Metric.SetDefaults for the list; in short replicas 1, revisionHistoryLimit
// 10, progressDeadlineSeconds 600, canary maxSurge and maxUnavailable 25%,
// scaleDownDelaySeconds and abortScaleDownDelaySeconds 30 (canary: with
// traffic routing only), blue/green autoPromotionEnabled true and
// maxUnavailable 25%, consecutiveErrorLimit 4, web timeoutSeconds 10. The
// one default that is not Argo's is metadata.namespace "default", which is
// kubectl's.
//
// # Validation rules
//
// Every kind: metadata.name is a DNS-1123 label, and so is
// metadata.namespace when set (ClusterAnalysisTemplate: name only). Both
// end up in NATS subjects, where dots are separators.
//
// Rollout: exactly one of canary and blueGreen; a non-empty selector that
// matches the template's labels; at least one container; non-negative
// counts and delays; progressDeadlineSeconds above minReadySeconds.
// Canary: maxSurge and maxUnavailable are integers or percentages and not
// both 0; stableService differs from canaryService, and both are set with
// a router that splits by Service; every step sets exactly one action;
// setWeight is between 0 and 100 (maxTrafficWeight when set, which only
// nginx and plugins allow); pause durations parse; setCanaryScale,
// scaleDownDelaySeconds and dynamicStableScale require trafficRouting, and
// dynamicStableScale excludes scaleDownDelaySeconds; setHeaderRoute needs
// Istio, ALB (exact matches only) or Gateway API, setMirrorRoute needs
// Istio, and both name a route listed in managedRoutes; each match sets
// exactly one of exact, prefix and regex; analysis references name their
// templates and give arguments unique names. Experiment steps: at least one
// template; template names set, unique and DNS-1123 labels; specRef stable
// or canary; replicas at least 0; metadata labels and annotations as
// Kubernetes takes them; a selector, when set, not empty and selecting the
// template's pods (with metadata.labels added to both, as Argo does); a
// weight only with trafficRouting, only through ExperimentWeightRouters,
// between 0 and maxTrafficWeight, and with the other templates' and the
// canary's weight at the step (the last setWeight before it) at most
// maxTrafficWeight; Service names DNS-1035 labels, unique in the step and
// neither canaryService nor stableService, and a Service named after the
// ReplicaSet short enough to be one; duration parses; analyses named
// (unique, DNS-1123 subdomains), with a templateName and arguments as
// analysis steps', whose {{...}} placeholders are experiment variables
// naming templates of the step (see ExpandExperimentVariables); dryRun
// names metrics; analysisRunMetadata labels and annotations as Kubernetes
// takes them; scaleDownDelaySeconds at least 0. Blue/green: activeService is
// set and differs from previewService; scaleDownDelayRevisionLimit is at
// most revisionHistoryLimit.
//
// Experiment (standalone): at least one template; template names set,
// unique and DNS-1123 labels; a selector, not empty, that selects the
// template's labels; at least one container, named uniquely; replicas and
// minReadySeconds at least 0, and minReadySeconds at most
// progressDeadlineSeconds (600 when unset), which is at least 1; each
// template's ReplicaSet, <experiment>-<template>, at most 63 characters,
// and a Service named after it starting with a letter; Service names
// DNS-1035 labels, one per template. Its duration, scaleDownDelaySeconds,
// dryRun, analysisRunMetadata and analyses as an experiment step's, but
// arguments take only a value (Argo Rollouts drops an Experiment's
// valueFrom), each run's name <experiment>-<analysis> is at most 253
// characters, and measurementRetention entries name a metric and a limit
// of at least 0. Lint also refuses a Rollout and an Experiment of one name
// in one namespace: they share its subjects.
//
// AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun: at least one
// metric; metric names are set and unique; each metric has exactly one
// provider, prometheus (address and query set) or web (url set, body only
// with POST or PUT); interval and initialDelay parse; count above 1 needs
// an interval; failureLimit is at least -1 (no limit) and the other limits
// at least 0, none above count; argument names are set and unique; a
// template declares every {{args.NAME}} its metrics use. A count, limit or
// duration that is an {{args.NAME}} placeholder is only known, and checked,
// once a run resolves it.
package spec
