package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// ErrTracingConfig means the OTEL_* environment asks for something Sluice
// cannot export to.
var ErrTracingConfig = errors.New("invalid tracing configuration")

// SetupTracing installs the global TracerProvider and W3C propagators for
// the binary service (its resource's service.name, which OTEL_SERVICE_NAME
// overrides) from the standard OpenTelemetry environment read through
// getenv:
//
//   - OTEL_SDK_DISABLED=true, or OTEL_TRACES_EXPORTER=none, or no exporter
//     and no OTLP endpoint: nothing is exported (spans are not recorded).
//   - OTEL_TRACES_EXPORTER=otlp, or unset with OTEL_EXPORTER_OTLP_ENDPOINT
//     or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set: spans are batched to an
//     OTLP collector over OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or
//     OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf, the default, or grpc).
//
// Endpoint, headers, timeout, TLS, compression, sampler
// (OTEL_TRACES_SAMPLER) and batching (OTEL_BSP_*) are read by the
// OpenTelemetry SDK as its specification says. The returned shutdown
// flushes spans not yet exported. Errors wrap ErrTracingConfig.
func SetupTracing(ctx context.Context, service string, getenv func(string) string) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	noop := func(context.Context) error { return nil }
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return noop, nil
	}
	exporter := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")))
	if exporter == "" {
		exporter = "none"
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
			exporter = "otlp"
		}
	}
	switch exporter {
	case "none":
		return noop, nil
	case "otlp":
	default:
		return nil, fmt.Errorf("%w: OTEL_TRACES_EXPORTER %q: supported are otlp and none", ErrTracingConfig, exporter)
	}
	protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var exp sdktrace.SpanExporter
	switch protocol {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("%w: OTLP protocol %q: supported are http/protobuf and grpc", ErrTracingConfig, protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: OTLP exporter: %v", ErrTracingConfig, err)
	}
	res, err := Resource(ctx, service)
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// Resource describes the process: service.name is service unless
// OTEL_SERVICE_NAME says otherwise, with OTEL_RESOURCE_ATTRIBUTES and the
// SDK's own attributes.
func Resource(ctx context.Context, service string) (*resource.Resource, error) {
	// Later options win: the environment overrides the binary's name.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: resource: %v", ErrTracingConfig, err)
	}
	return res, nil
}
