package guard_test

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/services/traffic/kube/guard"
	"github.com/sluicehq/sluice/services/traffic/kube/kubefake"
)

// A Memory spares the read of an object the router wrote last; a write
// by someone else since makes the next route conflict, read the object
// again and still put its change in effect over the other write; an
// object deleted since is reported missing, as without a Memory.
func TestMemory(t *testing.T) {
	ctx := context.Background()
	c := kubefake.NewClientset(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"}})
	mem := guard.NewMemory[*corev1.Service](0)
	services := mem.Client("default", c.CoreV1().Services("default"))

	if _, err := guard.Update(ctx, services, "web", "Service default/web", 1, setLabel("a")); err != nil {
		t.Fatal(err)
	}
	before := kubefake.Count(c, "get")
	if _, err := guard.Update(ctx, services, "web", "Service default/web", 2, setLabel("b")); err != nil {
		t.Fatal(err)
	}
	if gets := kubefake.Count(c, "get") - before; gets != 0 {
		t.Errorf("the second route read the Service %d times, want 0: it was remembered", gets)
	}

	// Someone else writes the Service: the remembered copy is old.
	other, err := c.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other.Annotations = map[string]string{"user": "edit"}
	if _, err := c.CoreV1().Services("default").Update(ctx, other, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := guard.Update(ctx, services, "web", "Service default/web", 3, setLabel("c")); err != nil {
		t.Fatal(err)
	}
	got, err := c.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels["x"] != "c" || got.Annotations["user"] != "edit" || guard.Seq(got) != 3 {
		t.Errorf("after a write by someone else: labels %v annotations %v, want x=c over the user's edit at seq 3", got.Labels, got.Annotations)
	}

	if err := c.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = guard.Update(ctx, services, "web", "Service default/web", 4, setLabel("d"))
	if !errors.Is(err, guard.ErrMissing) {
		t.Errorf("a remembered Service deleted since: %v, want ErrMissing", err)
	}
}
