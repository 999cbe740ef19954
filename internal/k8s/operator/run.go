package operator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/coffer-dev/coffer/apis/coffer/v1alpha1"
)

// Options configure Run. The zero value runs in-cluster (or with the
// KUBECONFIG of the environment) with metrics on :8080, probes on :8081
// and no leader election.
type Options struct {
	// Config is the API server to use. nil: Kubeconfig, else
	// controller-runtime's GetConfig (KUBECONFIG, in-cluster,
	// ~/.kube/config).
	Config *rest.Config
	// Kubeconfig is a kubeconfig file, used when Config is nil. "": none.
	Kubeconfig string
	// MetricsAddr serves Prometheus metrics. "": ":8080"; "0": off.
	MetricsAddr string
	// ProbeAddr serves /healthz and /readyz. "": ":8081"; "0": off.
	ProbeAddr string
	// LeaderElection makes only one replica active.
	LeaderElection bool
	// LeaderElectionNamespace holds the Lease. "": the pod's namespace.
	LeaderElectionNamespace string
	// LeaderElectionID names the Lease. "": "coffer-operator.coffer.dev".
	LeaderElectionID string
	// Logger receives the operator's logs. nil: discard.
	Logger *slog.Logger
	// Now is the clock. nil: time.Now.
	Now func() time.Time
	// OnLogin, when set, is called after every successful login to a
	// server (tests count logins with it).
	OnLogin func()
}

// Scheme returns a scheme with the built-in types and coffer.dev/v1alpha1.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// Run runs the operator until ctx is done: the CofferSecret,
// ClusterCofferSecret, CofferStore and ClusterCofferStore controllers,
// the event subscriptions that push changes, and the reloader of
// annotated Deployments, StatefulSets and DaemonSets. It returns nil when
// ctx ends, or the error that stopped the manager.
func Run(ctx context.Context, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	cfg := o.Config
	if cfg == nil {
		var err error
		if o.Kubeconfig != "" {
			cfg, err = clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
		} else {
			cfg, err = ctrl.GetConfig()
		}
		if err != nil {
			return fmt.Errorf("operator: kubeconfig: %w", err)
		}
	}
	scheme, err := Scheme()
	if err != nil {
		return fmt.Errorf("operator: scheme: %w", err)
	}
	addr := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	id := o.LeaderElectionID
	if id == "" {
		id = "coffer-operator.coffer.dev"
	}
	// Run may be called more than once in one process (the end-to-end
	// tests do); controller-runtime otherwise refuses a controller name
	// it has seen before, even from a manager that has stopped.
	skipNames := true
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Controller:              config.Controller{SkipNameValidation: &skipNames},
		Scheme:                  scheme,
		Logger:                  logr.FromSlogHandler(log.Handler()),
		Metrics:                 metricsserver.Options{BindAddress: addr(o.MetricsAddr, ":8080")},
		HealthProbeBindAddress:  addr(o.ProbeAddr, ":8081"),
		LeaderElection:          o.LeaderElection,
		LeaderElectionID:        id,
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		// The operator stops its own goroutines on ctx; releasing the
		// Lease at once lets a standby take over without waiting it out.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("operator: manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := setup(mgr, log, now, o.OnLogin); err != nil {
		return err
	}
	if err := mgr.Start(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("operator: %w", err)
	}
	return nil
}

// setup registers the controllers with mgr.
func setup(mgr manager.Manager, log *slog.Logger, now func() time.Time, onLogin func()) error {
	cs, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return fmt.Errorf("operator: clientset: %w", err)
	}
	tokens := kubeTokens{create: func(ctx context.Context, ns, name string, tr *authenticationv1.TokenRequest, opts metav1.CreateOptions) (*authenticationv1.TokenRequest, error) {
		return cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, tr, opts)
	}}
	ss := newSessions(tokens, mgr.GetClient(), now)
	ss.onLogin = onLogin
	ss.log = log

	limiter := workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](time.Second, 5*time.Minute)
	pushed := make(chan event.GenericEvent, 1024)
	sr := &secretReconciler{
		client: mgr.GetClient(), reader: mgr.GetAPIReader(), sessions: ss, events: mgr.GetEventRecorder("coffer-operator"),
		log: log, now: now,
	}
	sr.hub = newHub(log, func(nn types.NamespacedName) {
		sr.force(nn)
		obj := &v1alpha1.CofferSecret{}
		obj.Namespace, obj.Name = nn.Namespace, nn.Name
		select {
		case pushed <- event.GenericEvent{Object: obj}:
		default: // the queue is full; refreshInterval still syncs it
		}
	})
	kicks := map[bool]chan event.GenericEvent{false: make(chan event.GenericEvent, 256), true: make(chan event.GenericEvent, 256)}
	sr.kickStore = func(kind, ns, name string) {
		cluster := kind == v1alpha1.KindClusterStore
		var obj client.Object = &v1alpha1.CofferStore{}
		if cluster {
			obj = &v1alpha1.ClusterCofferStore{}
		}
		obj.SetNamespace(ns)
		obj.SetName(name)
		select {
		case kicks[cluster] <- event.GenericEvent{Object: obj}:
		default:
		}
	}
	if err := mgr.Add(sr.hub); err != nil {
		return err
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				ss.each(func(s *session) { s.maintain(ctx) })
			}
		}
	})); err != nil {
		return err
	}

	managedSecret := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		if n := o.GetLabels()[LabelManaged]; n != "" {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: n}}}
		}
		return nil
	})
	bld := ctrl.NewControllerManagedBy(mgr).Named("coffersecret").
		For(&v1alpha1.CofferSecret{}).
		Watches(&corev1.Secret{}, managedSecret)
	for _, w := range workloads {
		// A rollout's progress decides when a previous lease is revoked.
		bld = bld.Watches(w.new(), handler.EnqueueRequestsFromMapFunc(sr.pendingFor))
	}
	if err := bld.
		WatchesRawSource(source.Channel(pushed, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{RateLimiter: limiter, MaxConcurrentReconciles: 4}).
		Complete(sr); err != nil {
		return fmt.Errorf("operator: coffersecret controller: %w", err)
	}
	for _, cluster := range []bool{false, true} {
		var obj client.Object = &v1alpha1.CofferStore{}
		name := "cofferstore"
		if cluster {
			obj, name = &v1alpha1.ClusterCofferStore{}, "clustercofferstore"
		}
		if err := ctrl.NewControllerManagedBy(mgr).Named(name).
			For(obj, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
			WatchesRawSource(source.Channel(kicks[cluster], &handler.EnqueueRequestForObject{})).
			Complete(&storeReconciler{client: mgr.GetClient(), sessions: ss, cluster: cluster}); err != nil {
			return fmt.Errorf("operator: %s controller: %w", name, err)
		}
	}
	ccr := &clusterSecretReconciler{client: mgr.GetClient()}
	if err := ctrl.NewControllerManagedBy(mgr).Named("clustercoffersecret").
		For(&v1alpha1.ClusterCofferSecret{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&v1alpha1.CofferSecret{}).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
			var l v1alpha1.ClusterCofferSecretList
			if err := mgr.GetClient().List(ctx, &l); err != nil {
				return nil
			}
			out := make([]reconcile.Request, 0, len(l.Items))
			for _, c := range l.Items {
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: c.Name}})
			}
			return out
		})).
		Complete(ccr); err != nil {
		return fmt.Errorf("operator: clustercoffersecret controller: %w", err)
	}
	annotated := predicate.NewPredicateFuncs(func(o client.Object) bool {
		_, ok := o.GetAnnotations()[AnnotationReload]
		return ok
	})
	for _, w := range workloads {
		rr := &reloadReconciler{client: mgr.GetClient(), kind: w}
		if err := ctrl.NewControllerManagedBy(mgr).Named("reload-"+w.name).
			For(w.new(), builder.WithPredicates(annotated)).
			Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(rr.workloadsFor)).
			Complete(rr); err != nil {
			return fmt.Errorf("operator: reload controller: %w", err)
		}
	}
	return nil
}
