package notifier

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/sluicehq/sluice/services/notifier/config"
)

// Argo's names for the configuration on Kubernetes, which the notifier
// reads unchanged.
const (
	ConfigMapName = config.ConfigMapName
	SecretName    = config.SecretName
)

// DefaultReloadInterval is how often a FileSource looks for changes.
const DefaultReloadInterval = 2 * time.Second

// FileSource is a configuration file (--config) and, optionally, a
// directory of secrets (--secrets-dir), reloaded when either changes.
// Polling (of sizes, times and contents) rather than file events follows
// the symlink swaps by which Kubernetes updates a mounted ConfigMap.
type FileSource struct {
	// Path is the configuration file.
	Path string
	// SecretsDir, when set, is watched too: a changed secret reloads.
	SecretsDir string
	// Build turns the file's content into a Setup. Its errors are shown
	// to people: they must not contain a secret.
	Build func(data []byte) (*Setup, error)
	// Interval is how often the files are checked (default 2s).
	Interval time.Duration
	Log      *slog.Logger

	// loaded is the fingerprint of what Load built: Watch applies what
	// differs from it.
	loaded [32]byte
}

// Load reads and builds the file.
func (f *FileSource) Load(context.Context) (*Setup, error) {
	setup, sum, err := f.load()
	f.loaded = sum
	return setup, err
}

func (f *FileSource) load() (*Setup, [32]byte, error) {
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("notifications configuration: %w", err)
	}
	sum := f.fingerprint(data)
	setup, err := f.Build(data)
	if err != nil {
		return nil, sum, fmt.Errorf("notifications configuration %s: %w", f.Path, err)
	}
	return setup, sum, nil
}

// fingerprint digests the file's content and the secrets directory's
// files (names, sizes, times), so that any change shows.
func (f *FileSource) fingerprint(data []byte) [32]byte {
	h := sha256.New()
	h.Write(data)
	if f.SecretsDir != "" {
		_ = filepath.WalkDir(f.SecretsDir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if info, err := os.Stat(path); err == nil { // follows the symlinks of a mounted Secret
				fmt.Fprintf(h, "%s\x00%d\x00%d\x00", path, info.Size(), info.ModTime().UnixNano())
			}
			return nil
		})
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// Watch checks the files every Interval and applies each changed
// configuration that builds; one that does not is logged, problem by
// problem, and the one in use stays.
func (f *FileSource) Watch(ctx context.Context, apply func(*Setup)) {
	interval := f.Interval
	if interval <= 0 {
		interval = DefaultReloadInterval
	}
	log := f.Log
	if log == nil {
		log = slog.Default()
	}
	last := f.loaded
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := os.ReadFile(f.Path)
		if err != nil {
			if sum := [32]byte{}; last != sum {
				log.Error("notifications configuration unreadable; keeping the one in use", "file", f.Path, "error", err)
				last = sum
			}
			continue
		}
		sum := f.fingerprint(data)
		if sum == last {
			continue
		}
		last = sum
		setup, err := f.Build(data)
		if err != nil {
			logProblems(log, "notifications configuration "+f.Path+" has problems; keeping the one in use", err)
			continue
		}
		apply(setup)
	}
}

// logProblems logs each of the problems err joins.
func logProblems(log *slog.Logger, msg string, err error) {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			log.Error(msg, "problem", e.Error())
		}
		return
	}
	log.Error(msg, "problem", err.Error())
}

// KubeSource is Argo's ConfigMap argo-rollouts-notification-configmap and
// Secret argo-rollouts-notification-secret in Namespace, read through
// informers and reloaded when either changes. The Secret is optional.
type KubeSource struct {
	Client    kubernetes.Interface
	Namespace string
	// Build turns the ConfigMap's data and the Secret's into a Setup; its
	// errors must not contain a secret.
	Build func(cm, secret map[string]string) (*Setup, error)
	Log   *slog.Logger

	// started by Load, read by Watch.
	run *kubeWatch
}

type kubeWatch struct {
	cms, secrets cache.Indexer
	changed      chan struct{}
	stop         context.CancelFunc
	// last is the digest of the data built last.
	last []byte
}

// Load starts the informers and builds the configuration once their
// caches hold the objects. Without the ConfigMap it builds an empty
// configuration (sending nothing) and logs what is missing; the
// ConfigMap is applied when it comes.
func (k *KubeSource) Load(ctx context.Context) (*Setup, error) {
	if k.Log == nil {
		k.Log = slog.Default()
	}
	byName := func(name string) informers.SharedInformerOption {
		return informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		})
	}
	cmFactory := informers.NewSharedInformerFactoryWithOptions(k.Client, 0, informers.WithNamespace(k.Namespace), byName(ConfigMapName))
	secretFactory := informers.NewSharedInformerFactoryWithOptions(k.Client, 0, informers.WithNamespace(k.Namespace), byName(SecretName))
	cmInf, secretInf := cmFactory.Core().V1().ConfigMaps().Informer(), secretFactory.Core().V1().Secrets().Informer()
	w := &kubeWatch{cms: cmInf.GetIndexer(), secrets: secretInf.GetIndexer(), changed: make(chan struct{}, 1)}
	poke := func() {
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{AddFunc: func(any) { poke() }, UpdateFunc: func(any, any) { poke() }, DeleteFunc: func(any) { poke() }}
	for _, inf := range []cache.SharedIndexInformer{cmInf, secretInf} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return nil, err
		}
	}
	runCtx, stop := context.WithCancel(context.Background())
	w.stop = stop
	cmFactory.Start(runCtx.Done())
	secretFactory.Start(runCtx.Done())
	go func() {
		<-runCtx.Done()
		cmFactory.Shutdown()
		secretFactory.Shutdown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), cmInf.HasSynced, secretInf.HasSynced) {
		stop()
		return nil, fmt.Errorf("notifications configuration: the ConfigMap %s/%s could not be read: %w", k.Namespace, ConfigMapName, context.Cause(ctx))
	}
	k.run = w
	// The caches' first fill is what Load builds now, not a change.
	select {
	case <-w.changed:
	default:
	}
	cm, secret, err := w.data(k.Namespace)
	if err != nil {
		// Not there yet: run with nothing configured, and build it when
		// it comes, so that installing Sluice does not wait on it.
		k.Log.Warn("no notifications configuration yet; nothing is sent until it exists", "error", err)
		cm, secret = map[string]string{}, map[string]string{}
	}
	w.last = digest(cm, secret)
	setup, err := k.Build(cm, secret)
	if err != nil {
		stop()
		return nil, fmt.Errorf("notifications configuration %s/%s: %w", k.Namespace, ConfigMapName, err)
	}
	return setup, nil
}

// data is the ConfigMap's data and the Secret's (decoded), from the
// caches.
func (w *kubeWatch) data(ns string) (cm, secret map[string]string, err error) {
	obj, ok, _ := w.cms.GetByKey(ns + "/" + ConfigMapName)
	if !ok {
		return nil, nil, fmt.Errorf("notifications configuration: no ConfigMap %s in namespace %s (kubectl -n %s get configmap %s): %w", ConfigMapName, ns, ns, ConfigMapName,
			apierrors.NewNotFound(corev1.Resource("configmaps"), ConfigMapName))
	}
	cm = obj.(*corev1.ConfigMap).Data
	secret = map[string]string{}
	if obj, ok, _ := w.secrets.GetByKey(ns + "/" + SecretName); ok {
		s := obj.(*corev1.Secret)
		for k, v := range s.Data {
			secret[k] = string(v)
		}
		for k, v := range s.StringData {
			secret[k] = v
		}
	}
	return cm, secret, nil
}

// Watch rebuilds the configuration on each change of the ConfigMap or the
// Secret, until ctx ends; it then stops the informers.
func (k *KubeSource) Watch(ctx context.Context, apply func(*Setup)) {
	w := k.run
	if w == nil {
		<-ctx.Done()
		return
	}
	defer w.stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.changed:
		}
		cm, secret, err := w.data(k.Namespace)
		if err != nil {
			k.Log.Error("notifications configuration gone; keeping the one in use", "error", err)
			continue
		}
		sum := digest(cm, secret)
		if bytes.Equal(sum, w.last) {
			continue
		}
		w.last = sum
		setup, err := k.Build(cm, secret)
		if err != nil {
			logProblems(k.Log, "notifications configuration "+k.Namespace+"/"+ConfigMapName+" has problems; keeping the one in use", err)
			continue
		}
		apply(setup)
	}
}

// digest is a digest of both maps, to skip resyncs that change nothing.
func digest(maps ...map[string]string) []byte {
	h := sha256.New()
	for _, m := range maps {
		keys := sortedKeys(m)
		for _, k := range keys {
			fmt.Fprintf(h, "%s\x00%s\x00", k, m[k])
		}
		h.Write([]byte{1})
	}
	return h.Sum(nil)
}
