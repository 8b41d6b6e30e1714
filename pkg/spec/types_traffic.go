package spec

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"

	kjson "sigs.k8s.io/json"
)

// GatewayAPIPlugin is the key under trafficRouting.plugins that configures
// Gateway API routing. It is the name of Argo's Gateway API plugin, so a
// manifest written for Argo Rollouts with that plugin needs no change.
const GatewayAPIPlugin = "argoproj-labs/gatewayAPI"

// TrafficRouting configures the routers that split traffic between the
// stable and canary revisions. Several routers may be set at once; each is
// given the same weights.
type TrafficRouting struct {
	Istio *IstioTrafficRouting `json:"istio,omitempty"`
	Nginx *NginxTrafficRouting `json:"nginx,omitempty"`
	ALB   *ALBTrafficRouting   `json:"alb,omitempty"`
	SMI   *SMITrafficRouting   `json:"smi,omitempty"`

	// Ambassador, AppMesh, Traefik and Apisix are Argo routers Sluice does
	// not implement. They are kept so that Validate can name them.
	Ambassador json.RawMessage `json:"ambassador,omitempty"`
	AppMesh    json.RawMessage `json:"appMesh,omitempty"`
	Traefik    json.RawMessage `json:"traefik,omitempty"`
	Apisix     json.RawMessage `json:"apisix,omitempty"`

	// ManagedRoutes lists the header and mirror routes the rollout owns, in
	// order of precedence.
	ManagedRoutes []ManagedRoute `json:"managedRoutes,omitempty"`
	// Plugins holds router plugin configurations by plugin name. Sluice
	// implements one: GatewayAPIPlugin (see GatewayAPI).
	Plugins RouterPlugins `json:"plugins,omitempty"`
	// MaxTrafficWeight is the total weight, the denominator of setWeight;
	// unset means 100. Argo allows it with nginx and plugins only.
	MaxTrafficWeight *int32 `json:"maxTrafficWeight,omitempty"`

	// UnknownRouters are the keys under trafficRouting that name nothing
	// above, sorted. Decoding sets it; Validate rejects every entry, because
	// a router that is not understood must not be skipped silently.
	UnknownRouters []string `json:"-"`
}

// UnmarshalJSON decodes t case-sensitively, as Kubernetes does, and records
// unknown keys in UnknownRouters.
func (t *TrafficRouting) UnmarshalJSON(data []byte) error {
	type plain TrafficRouting
	var p plain
	if err := kjson.UnmarshalCaseSensitivePreserveInts(data, &p); err != nil {
		return err
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(data, &keys); err != nil {
		return err
	}
	known := jsonFields(reflect.TypeOf(p))
	p.UnknownRouters = nil
	for k := range keys {
		if _, ok := known[k]; !ok {
			p.UnknownRouters = append(p.UnknownRouters, k)
		}
	}
	sort.Strings(p.UnknownRouters)
	*t = TrafficRouting(p)
	return nil
}

// keepsUnknownKeys marks TrafficRouting as reporting its own unknown keys,
// so decoding does not warn about them a second time.
func (*TrafficRouting) keepsUnknownKeys() {}

// MaxWeight returns MaxTrafficWeight, or 100 when it is unset.
func (t *TrafficRouting) MaxWeight() int32 {
	if t == nil || t.MaxTrafficWeight == nil {
		return DefaultMaxTrafficWeight
	}
	return *t.MaxTrafficWeight
}

// GatewayAPI returns the configuration under plugins[GatewayAPIPlugin], or
// nil when that plugin is not configured. It returns an error when the
// configuration is not a JSON object of GatewayAPITrafficRouting's shape.
// Fields it does not know are ignored here; decoding reports them.
func (t *TrafficRouting) GatewayAPI() (*GatewayAPITrafficRouting, error) {
	if t == nil {
		return nil, nil
	}
	raw, ok := t.Plugins[GatewayAPIPlugin]
	if !ok {
		return nil, nil
	}
	var g GatewayAPITrafficRouting
	if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, &g); err != nil {
		return nil, fmt.Errorf("plugin %s: %w", GatewayAPIPlugin, err)
	}
	return &g, nil
}

// RouterPlugins maps a router plugin's name to its configuration, which is
// kept as raw JSON because each plugin defines its own.
type RouterPlugins map[string]json.RawMessage

// ManagedRoute names a route the rollout may create and remove.
type ManagedRoute struct {
	Name string `json:"name"`
}

// IstioTrafficRouting splits traffic with Istio VirtualServices, by host
// (canary and stable Services) or by DestinationRule subsets.
type IstioTrafficRouting struct {
	// VirtualService and VirtualServices are alternatives: set exactly one.
	VirtualService  *IstioVirtualService  `json:"virtualService,omitempty"`
	VirtualServices []IstioVirtualService `json:"virtualServices,omitempty"`
	// DestinationRule, when set, splits by subsets instead of Services.
	DestinationRule *IstioDestinationRule `json:"destinationRule,omitempty"`
}

// IstioVirtualService names a VirtualService and the routes in it to edit.
type IstioVirtualService struct {
	Name string `json:"name"`
	// Routes are HTTP route names; may be omitted when there is one route.
	Routes    []string   `json:"routes,omitempty"`
	TLSRoutes []TLSRoute `json:"tlsRoutes,omitempty"`
	TCPRoutes []TCPRoute `json:"tcpRoutes,omitempty"`
}

// TLSRoute selects a TLS route of a VirtualService by port and SNI hosts.
type TLSRoute struct {
	Port     int64    `json:"port,omitempty"`
	SNIHosts []string `json:"sniHosts,omitempty"`
}

// TCPRoute selects a TCP route of a VirtualService by port.
type TCPRoute struct {
	Port int64 `json:"port,omitempty"`
}

// IstioDestinationRule names a DestinationRule and its two subsets.
type IstioDestinationRule struct {
	Name             string `json:"name"`
	CanarySubsetName string `json:"canarySubsetName"`
	StableSubsetName string `json:"stableSubsetName"`
}

// NginxTrafficRouting splits traffic with canary Ingresses of the NGINX
// ingress controller.
type NginxTrafficRouting struct {
	AnnotationPrefix string `json:"annotationPrefix,omitempty"`
	// StableIngress and StableIngresses are alternatives: set exactly one.
	StableIngress                string            `json:"stableIngress,omitempty"`
	StableIngresses              []string          `json:"stableIngresses,omitempty"`
	AdditionalIngressAnnotations map[string]string `json:"additionalIngressAnnotations,omitempty"`
	CanaryIngressAnnotations     map[string]string `json:"canaryIngressAnnotations,omitempty"`
}

// ALBTrafficRouting splits traffic with AWS Load Balancer Controller
// action annotations.
type ALBTrafficRouting struct {
	// Ingress and Ingresses are alternatives: set exactly one.
	Ingress          string            `json:"ingress,omitempty"`
	Ingresses        []string          `json:"ingresses,omitempty"`
	ServicePort      int32             `json:"servicePort"`
	RootService      string            `json:"rootService,omitempty"`
	AnnotationPrefix string            `json:"annotationPrefix,omitempty"`
	StickinessConfig *StickinessConfig `json:"stickinessConfig,omitempty"`
}

// StickinessConfig is ALB target group stickiness.
type StickinessConfig struct {
	Enabled         bool  `json:"enabled"`
	DurationSeconds int64 `json:"durationSeconds"`
}

// SMITrafficRouting splits traffic with an SMI TrafficSplit.
type SMITrafficRouting struct {
	RootService      string `json:"rootService,omitempty"`
	TrafficSplitName string `json:"trafficSplitName,omitempty"`
}

// GatewayAPITrafficRouting is the configuration of the Gateway API router:
// the HTTPRoutes whose backendRefs to the canary and stable Services get
// their weights set. It has the field names of Argo's Gateway API plugin;
// the plugin's TCP, TLS and gRPC routes and route selectors are not
// supported.
type GatewayAPITrafficRouting struct {
	// HTTPRoute and HTTPRoutes are alternatives: set exactly one.
	HTTPRoute  string                `json:"httpRoute,omitempty"`
	HTTPRoutes []GatewayAPIHTTPRoute `json:"httpRoutes,omitempty"`
	// Namespace of the routes; unset means the rollout's namespace.
	Namespace string `json:"namespace,omitempty"`
	// ConfigMap is where Argo's plugin keeps managed route state. Sluice
	// keeps that state itself and ignores it.
	ConfigMap string `json:"configMap,omitempty"`
}

// GatewayAPIHTTPRoute names one HTTPRoute.
type GatewayAPIHTTPRoute struct {
	Name string `json:"name"`
	// UseHeaderRoutes adds setHeaderRoute rules to this route.
	UseHeaderRoutes bool `json:"useHeaderRoutes,omitempty"`
}
