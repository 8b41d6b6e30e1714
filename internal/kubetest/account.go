package kubetest

import (
	"context"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sluicehq/sluice/internal/poll"
)

// Account is a ServiceAccount of a test namespace that AccountClient acts as,
// with a Role of Rules there and nothing else, so that a test proves that
// what a service's deployed RBAC grants is enough.
type Account struct {
	// Name of the ServiceAccount, its Role and its RoleBinding.
	Name  string
	Rules []rbacv1.PolicyRule
	// Allowed returns nil once the API server's authorizer lets the
	// account do what the test needs (it learns new bindings from a
	// watch, shortly after they are created).
	Allowed func(ctx context.Context, c kubernetes.Interface) error
}

// AccountClient creates a in namespace and returns a client that uses its
// token once a.Allowed says the binding is in effect.
func (cp *ControlPlane) AccountClient(tb testing.TB, namespace string, a Account) kubernetes.Interface {
	tb.Helper()
	client, err := kubernetes.NewForConfig(cp.AccountConfig(tb, namespace, a))
	if err != nil {
		tb.Fatal(err)
	}
	return client
}

// AccountConfig is AccountClient's configuration, for other clients
// (dynamic) of the same account.
func (cp *ControlPlane) AccountConfig(tb testing.TB, namespace string, a Account) *rest.Config {
	tb.Helper()
	ctx := context.Background()
	if _, err := cp.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: a.Name}}, metav1.CreateOptions{}); err != nil {
		tb.Fatal(err)
	}
	if _, err := cp.Client.RbacV1().Roles(namespace).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: a.Name}, Rules: a.Rules}, metav1.CreateOptions{}); err != nil {
		tb.Fatal(err)
	}
	if _, err := cp.Client.RbacV1().RoleBindings(namespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: a.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: a.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: a.Name, Namespace: namespace}},
	}, metav1.CreateOptions{}); err != nil {
		tb.Fatal(err)
	}
	exp := int64(3600)
	tr, err := cp.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, a.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(cp.Config)
	cfg.BearerToken = tr.Status.Token
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	poll.Until(tb, "the "+a.Name+" account's Role to be in effect in "+namespace, func() error {
		return a.Allowed(ctx, client)
	}, poll.Timeout(time.Minute))
	return cfg
}
