package nginx

import (
	"fmt"
	"strconv"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic"
)

// ingressClassAnnotation is the ingress class before spec.ingressClassName;
// ingress-nginx still honours it, so the canary keeps the stable's.
const ingressClassAnnotation = "kubernetes.io/ingress.class"

// maxNameLength is the longest Ingress name (a DNS-1123 subdomain).
const maxNameLength = 253

// CanaryIngressName is the name of the canary Ingress the router keeps for
// the stable Ingress stableIngress of rollout: "<rollout>-<stableIngress>-canary",
// the head cut so that the whole fits in 253 characters, as Argo Rollouts
// names it.
func CanaryIngressName(rollout, stableIngress string) string {
	const suffix = "-canary"
	head := rollout + "-" + stableIngress
	if len(head) > maxNameLength-len(suffix) {
		head = head[:maxNameLength-len(suffix)]
	}
	return head + suffix
}

// annotationPrefix is the prefix of the canary annotations for n.
func annotationPrefix(n *spec.NginxTrafficRouting) string {
	if n.AnnotationPrefix != "" {
		return n.AnnotationPrefix
	}
	return DefaultAnnotationPrefix
}

// desiredCanary returns the canary Ingress of stable for route: the stable
// Ingress's class, TLS and, of its rules, the paths whose backend is the
// stable Service, pointed at the canary Service; and the canary annotations.
// It returns an error wrapping traffic.ErrRejected when no path of stable
// leads to the stable Service.
//
// Paths of the stable Ingress that lead elsewhere are left out (Argo copies
// them along with their rule): ingress-nginx allows one canary per host and
// path, so copying them would make this canary Ingress fight the canary
// Ingress of another rollout sharing the stable Ingress.
func desiredCanary(ref events.Ref, stable *networkingv1.Ingress, route tasks.Route) (*networkingv1.Ingress, error) {
	canary := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{
			Name:        CanaryIngressName(ref.Name, stable.Name),
			Namespace:   ref.Namespace,
			Annotations: canaryAnnotations(ref, stable, route),
		},
	}
	canary.Spec.IngressClassName = stable.Spec.IngressClassName
	for _, tls := range stable.Spec.TLS {
		canary.Spec.TLS = append(canary.Spec.TLS, *tls.DeepCopy())
	}
	for _, rule := range stable.Spec.Rules {
		if rule.HTTP == nil {
			continue
		}
		var paths []networkingv1.HTTPIngressPath
		for _, p := range rule.HTTP.Paths {
			if p.Backend.Service == nil || p.Backend.Service.Name != route.StableService {
				continue
			}
			p := *p.DeepCopy()
			p.Backend.Service.Name = route.CanaryService
			paths = append(paths, p)
		}
		if len(paths) > 0 {
			canary.Spec.Rules = append(canary.Spec.Rules, networkingv1.IngressRule{
				Host:             rule.Host,
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}},
			})
		}
	}
	if len(canary.Spec.Rules) == 0 {
		return nil, fmt.Errorf("%w: stable Ingress %s/%s (trafficRouting.nginx) has no path whose backend is Service %q (spec.strategy.canary.stableService); point the paths the canary should share at that Service", traffic.ErrRejected, ref.Namespace, stable.Name, route.StableService)
	}
	return canary, nil
}

// canaryAnnotations are the whole annotations of the canary Ingress, in
// increasing precedence: the stable's ingress class, additionalIngressAnnotations
// (prefixed unless they already are, as Argo does),
// canaryIngressAnnotations as they are, then what the router must control:
// canary, canary-weight, canary-weight-total (only with maxTrafficWeight)
// and spec.AnnotationManagedBy.
func canaryAnnotations(ref events.Ref, stable *networkingv1.Ingress, route tasks.Route) map[string]string {
	n := route.TrafficRouting.Nginx
	prefix := annotationPrefix(n)
	ann := map[string]string{}
	if class, ok := stable.Annotations[ingressClassAnnotation]; ok {
		ann[ingressClassAnnotation] = class
	}
	for k, v := range n.AdditionalIngressAnnotations {
		if !strings.HasPrefix(k, prefix) {
			k = prefix + "/" + k
		}
		ann[k] = v
	}
	for k, v := range n.CanaryIngressAnnotations {
		ann[k] = v
	}
	ann[prefix+"/canary"] = "true"
	ann[prefix+"/canary-weight"] = strconv.FormatInt(int64(route.CanaryWeight), 10)
	if total := route.TrafficRouting.MaxTrafficWeight; total != nil {
		ann[prefix+"/canary-weight-total"] = strconv.FormatInt(int64(*total), 10)
	}
	ann[spec.AnnotationManagedBy] = ref.Name
	return ann
}

// storedWeight is the canary weight a canary Ingress gives ingress-nginx.
func storedWeight(ing *networkingv1.Ingress, prefix string) (int32, error) {
	if v := ing.Annotations[prefix+"/canary"]; v != "true" {
		return 0, fmt.Errorf("annotation %s/canary is %q, not \"true\"", prefix, v)
	}
	v, ok := ing.Annotations[prefix+"/canary-weight"]
	if !ok {
		return 0, fmt.Errorf("annotation %s/canary-weight is missing", prefix)
	}
	w, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("annotation %s/canary-weight: %w", prefix, err)
	}
	return int32(w), nil
}
