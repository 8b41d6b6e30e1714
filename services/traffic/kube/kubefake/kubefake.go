// Package kubefake is test support for the Kubernetes traffic routers, to
// be imported by their tests only. Its fake clients behave like an API
// server where client-go's plain fakes do not and the routers depend on it:
// every create and update gives the object a new resourceVersion, and an
// update carrying a resourceVersion other than the stored one is refused
// with 409 Conflict, so that concurrent writers conflict and re-read as
// they would in a cluster. The other functions seed the fakes and check
// what the routers wrote to them.
package kubefake

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/diff"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/services/traffic"
)

// versions hands out resourceVersions. The reactors that call next run
// under their fake's lock (which also makes each check of a resourceVersion
// and the write after it atomic), so it needs no lock of its own.
type versions struct{ last int64 }

func (v *versions) next() string {
	v.last++
	return strconv.FormatInt(v.last, 10)
}

// conflict is the API server's answer to an update of obj whose
// resourceVersion is not the one stored (cur), nil when it is.
func conflict(a k8stesting.UpdateAction, cur runtime.Object, obj metav1.Object) error {
	if cur.(metav1.Object).GetResourceVersion() == obj.GetResourceVersion() {
		return nil
	}
	return apierrors.NewConflict(a.GetResource().GroupResource(), obj.GetName(), errors.New("the object has been modified"))
}

// NewClientset returns a fake typed clientset holding objs that, like an
// API server, gives every object it creates or updates a new
// resourceVersion and refuses an update that does not carry the stored
// one. The objs themselves are stored without a resourceVersion.
func NewClientset(objs ...runtime.Object) *fake.Clientset {
	c := fake.NewClientset(objs...)
	var rv versions
	c.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		a.(k8stesting.CreateAction).GetObject().(metav1.Object).SetResourceVersion(rv.next())
		return false, nil, nil
	})
	c.PrependReactor("update", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ua := a.(k8stesting.UpdateAction)
		obj := ua.GetObject().(metav1.Object)
		cur, err := c.Tracker().Get(ua.GetResource(), ua.GetNamespace(), obj.GetName())
		if err != nil {
			return false, nil, nil // the tracker answers Not Found
		}
		if err := conflict(ua, cur, obj); err != nil {
			return true, nil, err
		}
		obj.SetResourceVersion(rv.next())
		return false, nil, nil
	})
	return c
}

// NewDynamicClient returns a fake dynamic client serving the resources of
// listKinds (each resource's list kind, as dynamicfake needs them) and
// holding objs, created through it, by resource. Like an API server, it
// gives every object it creates or updates a new resourceVersion and
// refuses an update that does not carry the stored one. The creates of
// objs are cleared from its actions.
func NewDynamicClient(t testing.TB, listKinds map[schema.GroupVersionResource]string, objs map[schema.GroupVersionResource][]*unstructured.Unstructured) *dynamicfake.FakeDynamicClient {
	t.Helper()
	c := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), listKinds)
	var rv versions
	c.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ca := a.(k8stesting.CreateAction)
		obj := ca.GetObject().(*unstructured.Unstructured).DeepCopy()
		obj.SetResourceVersion(rv.next())
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
		if err := conflict(ua, cur, obj); err != nil {
			return true, nil, err
		}
		obj.SetResourceVersion(rv.next())
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

// Object decodes a YAML manifest as the API server would: integers are
// int64.
func Object(t testing.TB, manifest string) *unstructured.Unstructured {
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

// Value decodes a YAML document, a part of an object such as its spec, as
// the API server decodes JSON: integers are int64.
func Value(t testing.TB, doc string) any {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := utiljson.Unmarshal(j, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// Get reads the object ns/name of resource gvr, failing t when it cannot.
func Get(t testing.TB, c dynamic.Interface, gvr schema.GroupVersionResource, ns, name string) *unstructured.Unstructured {
	t.Helper()
	u, err := c.Resource(gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// Recorder is a fake client that records the actions it receives: every
// fake of client-go, and those of this package.
type Recorder interface {
	Actions() []k8stesting.Action
}

// Count counts the actions c received with one of verbs ("create",
// "update", ...).
func Count(c Recorder, verbs ...string) int {
	n := 0
	for _, a := range c.Actions() {
		if slices.Contains(verbs, a.GetVerb()) {
			n++
		}
	}
	return n
}

// Writes counts the creates and updates c received.
func Writes(c Recorder) int {
	return Count(c, "create", "update")
}

// Rejected fails t unless err wraps traffic.ErrRejected and says each of
// says, and c received no create or update: a rejected route writes
// nothing.
func Rejected(t testing.TB, c Recorder, err error, says ...string) {
	t.Helper()
	if !errors.Is(err, traffic.ErrRejected) {
		t.Errorf("error %v, want ErrRejected", err)
	}
	for _, s := range says {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("error %v does not say %q", err, s)
		}
	}
	if n := Writes(c); n != 0 {
		t.Errorf("a rejected route wrote %d times", n)
	}
}

// Diff is a diff of want and got, "" when they are semantically equal (as
// equality.Semantic compares API objects).
func Diff(want, got any) string {
	if equality.Semantic.DeepEqual(want, got) {
		return ""
	}
	return diff.Diff(want, got)
}

// SameField fails t unless the field at path of got equals that of want,
// showing both as YAML; what names the object in the message.
func SameField(t testing.TB, what string, got, want *unstructured.Unstructured, path ...string) {
	t.Helper()
	g, _, _ := unstructured.NestedFieldNoCopy(got.Object, path...)
	w, _, _ := unstructured.NestedFieldNoCopy(want.Object, path...)
	if !reflect.DeepEqual(g, w) {
		gy, _ := yaml.Marshal(g)
		wy, _ := yaml.Marshal(w)
		t.Errorf("%s %v:\n--- got\n%s--- want\n%s", what, path, gy, wy)
	}
}
