package spec

import (
	"fmt"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// This file holds the checks every kind shares. Messages follow Kubernetes'
// wording ("must be greater than or equal to 0") so that Sluice's errors
// read like the API server's.

// validateObjectMeta checks that the name, and the namespace of a
// namespaced kind, are DNS-1123 labels: they become parts of NATS subjects
// and CloudEvent subjects, where dots and slashes have meaning. An empty
// namespace is allowed; SetDefaults makes it "default".
func validateObjectMeta(m *metav1.ObjectMeta, namespaced bool) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("metadata")
	if m.Name == "" {
		errs = append(errs, field.Required(p.Child("name"), ""))
	} else {
		errs = append(errs, dnsLabel(p.Child("name"), m.Name)...)
	}
	if namespaced && m.Namespace != "" {
		errs = append(errs, dnsLabel(p.Child("namespace"), m.Namespace)...)
	}
	return errs
}

func dnsLabel(p *field.Path, v string) field.ErrorList {
	if msgs := validation.IsDNS1123Label(v); len(msgs) > 0 {
		return field.ErrorList{field.Invalid(p, v, strings.Join(msgs, "; "))}
	}
	return nil
}

// serviceName checks a Service name, a DNS-1035 label, when it is set.
func serviceName(p *field.Path, v string) field.ErrorList {
	if v == "" {
		return nil
	}
	if msgs := validation.IsDNS1035Label(v); len(msgs) > 0 {
		return field.ErrorList{field.Invalid(p, v, strings.Join(msgs, "; "))}
	}
	return nil
}

type integer interface{ ~int32 | ~int64 }

// atLeast checks *v >= lo when v is set.
func atLeast[T integer](p *field.Path, v *T, lo T) field.ErrorList {
	if v == nil || *v >= lo {
		return nil
	}
	return field.ErrorList{field.Invalid(p, *v, fmt.Sprintf("must be greater than or equal to %d", lo))}
}

// between checks lo <= *v <= hi when v is set.
func between[T integer](p *field.Path, v *T, lo, hi T) field.ErrorList {
	if v == nil || (*v >= lo && *v <= hi) {
		return nil
	}
	return field.ErrorList{field.Invalid(p, *v, fmt.Sprintf("must be between %d and %d", lo, hi))}
}

// exactlyOne checks that exactly one of the named alternatives at p is set.
// set[i] tells whether names[i] is.
func exactlyOne(p *field.Path, names []string, set []bool) field.ErrorList {
	var chosen []string
	for i, name := range names {
		if set[i] {
			chosen = append(chosen, name)
		}
	}
	detail := "must set exactly one of " + list(names)
	switch len(chosen) {
	case 0:
		return field.ErrorList{field.Required(p, detail)}
	case 1:
		return nil
	}
	return field.ErrorList{field.Invalid(p, strings.Join(chosen, ", "), detail)}
}

// atMostOne checks that no more than one of the named alternatives at p is
// set.
func atMostOne(p *field.Path, names []string, set []bool) field.ErrorList {
	var chosen []string
	for i, name := range names {
		if set[i] {
			chosen = append(chosen, name)
		}
	}
	if len(chosen) <= 1 {
		return nil
	}
	return field.ErrorList{field.Invalid(p, strings.Join(chosen, ", "), "must set at most one of "+list(names))}
}

// list renders names as "a, b and c".
func list(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// intOrPercent checks that v is a non-negative integer or a percentage
// ("25%"), at most 100% when capped. It returns the number and whether it
// is a percentage; ok is false when v is unset or invalid.
func intOrPercent(p *field.Path, v *intstr.IntOrString, capped bool) (n int, percent, ok bool, errs field.ErrorList) {
	if v == nil {
		return 0, false, false, nil
	}
	if v.Type == intstr.Int {
		if v.IntVal < 0 {
			return 0, false, false, field.ErrorList{field.Invalid(p, v.IntVal, "must be greater than or equal to 0")}
		}
		return int(v.IntVal), false, true, nil
	}
	if msgs := validation.IsValidPercent(v.StrVal); len(msgs) > 0 {
		return 0, false, false, field.ErrorList{field.Invalid(p, v.StrVal, `must be an integer or a percentage such as "25%"`)}
	}
	n, _ = strconv.Atoi(strings.TrimSuffix(v.StrVal, "%"))
	if capped && n > 100 {
		return 0, true, false, field.ErrorList{field.Invalid(p, v.StrVal, "must not be greater than 100%")}
	}
	return n, true, true, nil
}

// intOrArg checks a metric count or limit: an integer of at least lo, a
// string holding one, or an {{args.NAME}} placeholder. known is false for
// unset, placeholder and invalid values.
func intOrArg(p *field.Path, v *intstr.IntOrString, lo int) (n int, known bool, errs field.ErrorList) {
	if v == nil {
		return 0, false, nil
	}
	if v.Type == intstr.Int {
		n = int(v.IntVal)
	} else {
		if isPlaceholder(v.StrVal) {
			return 0, false, nil
		}
		var err error
		if n, err = strconv.Atoi(strings.TrimSpace(v.StrVal)); err != nil {
			return 0, false, field.ErrorList{field.Invalid(p, v.StrVal, "must be an integer or an {{args.NAME}} placeholder")}
		}
	}
	if n < lo {
		return 0, false, field.ErrorList{field.Invalid(p, n, fmt.Sprintf("must be greater than or equal to %d", lo))}
	}
	return n, true, nil
}
