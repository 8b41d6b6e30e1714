package istio_test

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"
)

// newClient returns a fake dynamic client holding objs (with their
// resources) that, like an API server and unlike the plain fake, refuses an
// update carrying a stale resourceVersion, so concurrent writers conflict.
func newClient(t *testing.T, listKinds map[schema.GroupVersionResource]string, objs map[schema.GroupVersionResource][]*unstructured.Unstructured) *dynamicfake.FakeDynamicClient {
	t.Helper()
	c := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), listKinds)
	var version int64 // guarded by the fake's lock, which reactors run under
	next := func(obj *unstructured.Unstructured) {
		version++
		obj.SetResourceVersion(strconv.FormatInt(version, 10))
	}
	c.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ca := a.(k8stesting.CreateAction)
		obj := ca.GetObject().(*unstructured.Unstructured).DeepCopy()
		next(obj)
		if err := c.Tracker().Create(ca.GetResource(), obj, ca.GetNamespace()); err != nil {
			return true, nil, err
		}
		return true, obj, nil
	})
	c.PrependReactor("update", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ua := a.(k8stesting.UpdateAction)
		obj := ua.GetObject().(*unstructured.Unstructured).DeepCopy()
		cur, err := c.Tracker().Get(ua.GetResource(), ua.GetNamespace(), obj.GetName())
		if err != nil {
			return true, nil, err
		}
		if cur.(metav1.Object).GetResourceVersion() != obj.GetResourceVersion() {
			return true, nil, apierrors.NewConflict(ua.GetResource().GroupResource(), obj.GetName(), errors.New("the object has been modified"))
		}
		next(obj)
		if err := c.Tracker().Update(ua.GetResource(), obj, ua.GetNamespace()); err != nil {
			return true, nil, err
		}
		return true, obj, nil
	})
	for gvr, list := range objs {
		for _, o := range list {
			if _, err := c.Resource(gvr).Namespace(o.GetNamespace()).Create(context.Background(), o, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.ClearActions()
	return c
}

// object decodes a YAML manifest as the API server would: integers are
// int64.
func object(t *testing.T, manifest string) *unstructured.Unstructured {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatal(err)
	}
	return u
}

// writes counts the creates and updates c received.
func writes(c *dynamicfake.FakeDynamicClient) int {
	n := 0
	for _, a := range c.Actions() {
		if a.GetVerb() == "create" || a.GetVerb() == "update" {
			n++
		}
	}
	return n
}

func get(t *testing.T, c *dynamicfake.FakeDynamicClient, gvr schema.GroupVersionResource, ns, name string) *unstructured.Unstructured {
	t.Helper()
	u, err := c.Resource(gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// sameField fails t unless field of got equals field of want (both YAML in
// messages).
func sameField(t *testing.T, what string, got, want *unstructured.Unstructured, field ...string) {
	t.Helper()
	g, _, _ := unstructured.NestedFieldNoCopy(got.Object, field...)
	w, _, _ := unstructured.NestedFieldNoCopy(want.Object, field...)
	if !reflect.DeepEqual(g, w) {
		gy, _ := yaml.Marshal(g)
		wy, _ := yaml.Marshal(w)
		t.Errorf("%s %v:\n--- got\n%s--- want\n%s", what, field, gy, wy)
	}
}
