package config

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"sort"

	"sigs.k8s.io/yaml"

	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
)

// ConfigMapName and SecretName are the objects Argo Rollouts' notifications
// read, and the notifier reads on the kube platform.
const (
	ConfigMapName = "argo-rollouts-notification-configmap"
	SecretName    = "argo-rollouts-notification-secret"
)

// manifest is the part of a ConfigMap or Secret the file holds.
type manifest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Data       map[string]any `json:"data"`
	StringData map[string]any `json:"stringData"`
}

// ParseFile reads a configuration file: YAML documents holding one
// ConfigMap (Argo's argo-rollouts-notification-configmap; any name is
// accepted) and at most one Secret whose keys $name references resolve to
// (data base64-encoded, stringData plain; stringData wins, as the API
// server merges them). secret is nil without a Secret. Errors wrap
// ErrInvalid and never contain a secret's value.
func ParseFile(data []byte) (cm map[string]string, secret map[string]string, err error) {
	dec := yamlutil.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var cms, secrets int
	for doc := 1; ; doc++ {
		raw, rerr := dec.Read()
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return nil, nil, fmt.Errorf("%w: document %d: %v", ErrInvalid, doc, rerr)
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			doc--
			continue
		}
		var m manifest
		if err := yaml.Unmarshal(raw, &m); err != nil {
			// The message of a YAML error does not quote a value.
			return nil, nil, fmt.Errorf("%w: document %d: %v", ErrInvalid, doc, err)
		}
		switch m.Kind {
		case "ConfigMap":
			cms++
			if cms > 1 {
				return nil, nil, fmt.Errorf("%w: document %d: a second ConfigMap (%q): the file holds one notification configuration", ErrInvalid, doc, m.Metadata.Name)
			}
			if cm, err = stringValues(doc, "data", m.Data); err != nil {
				return nil, nil, err
			}
		case "Secret":
			secrets++
			if secrets > 1 {
				return nil, nil, fmt.Errorf("%w: document %d: a second Secret (%q): the file holds at most one", ErrInvalid, doc, m.Metadata.Name)
			}
			data, err := stringValues(doc, "data", m.Data)
			if err != nil {
				return nil, nil, err
			}
			plain, err := stringValues(doc, "stringData", m.StringData)
			if err != nil {
				return nil, nil, err
			}
			secret = map[string]string{}
			keys := make([]string, 0, len(data))
			for k := range data {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				b, err := base64.StdEncoding.DecodeString(data[k])
				if err != nil {
					return nil, nil, fmt.Errorf("%w: document %d: Secret %q: data.%s is not base64 (use stringData for plain values)", ErrInvalid, doc, m.Metadata.Name, k)
				}
				secret[k] = string(b)
			}
			for k, v := range plain {
				secret[k] = v
			}
		case "":
			return nil, nil, fmt.Errorf("%w: document %d: not a Kubernetes manifest (no kind): want a ConfigMap like %s", ErrInvalid, doc, ConfigMapName)
		default:
			return nil, nil, fmt.Errorf("%w: document %d: kind %s is not a ConfigMap or Secret", ErrInvalid, doc, m.Kind)
		}
	}
	if cm == nil {
		return nil, nil, fmt.Errorf("%w: no ConfigMap in the file: want a ConfigMap like %s", ErrInvalid, ConfigMapName)
	}
	return cm, secret, nil
}

// strings_ checks that every value of a ConfigMap's or Secret's field is
// a string, as the API server requires: a YAML list or map written
// without a block scalar is named, never quoted (it may be a secret).
func stringValues(doc int, field string, m map[string]any) (map[string]string, error) {
	out := make(map[string]string, len(m))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s, ok := m[k].(string)
		if !ok {
			return nil, fmt.Errorf("%w: document %d: %s.%s is not a string: write the value as a block (%s: |, then the YAML indented)", ErrInvalid, doc, field, k, k)
		}
		out[k] = s
	}
	return out, nil
}

// stripComments drops comment-only lines, so a document of comments is empty.
func stripComments(b []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}
