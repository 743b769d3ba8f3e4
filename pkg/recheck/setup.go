package recheck

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// SetupWithManager adds the re-check to mgr, to run on the leader, and has the manager's
// Secret, ServiceAccount and Node informers tell it what changes. The handlers run on every
// replica; they only record what to re-check, which the leader's loop takes.
func (c *Controller) SetupWithManager(ctx context.Context, mgr manager.Manager) error {
	if err := c.watch(ctx, mgr.GetCache()); err != nil {
		return err
	}
	return mgr.Add(c)
}

func (c *Controller) watch(ctx context.Context, informers cache.Informers) error {
	handlers := []struct {
		obj     client.Object
		handler toolscache.ResourceEventHandler
	}{
		{&corev1.Secret{}, toolscache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) {
				if s, ok := obj.(*corev1.Secret); ok {
					c.NotifySecret(s.Namespace, s.Name)
				}
			},
			UpdateFunc: func(old, cur any) {
				o, ok1 := old.(*corev1.Secret)
				s, ok2 := cur.(*corev1.Secret)
				if ok1 && ok2 && (o.Type != s.Type || !equality.Semantic.DeepEqual(o.Data, s.Data)) {
					c.NotifySecret(s.Namespace, s.Name)
				}
			},
			DeleteFunc: func(obj any) {
				if s, ok := deleted(obj).(*corev1.Secret); ok {
					c.NotifySecret(s.Namespace, s.Name)
				}
			},
		}},
		{&corev1.ServiceAccount{}, toolscache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) {
				if sa, ok := obj.(*corev1.ServiceAccount); ok {
					c.NotifyServiceAccount(sa.Namespace, sa.Name)
				}
			},
			UpdateFunc: func(old, cur any) {
				o, ok1 := old.(*corev1.ServiceAccount)
				sa, ok2 := cur.(*corev1.ServiceAccount)
				if ok1 && ok2 && !slices.Equal(o.ImagePullSecrets, sa.ImagePullSecrets) {
					c.NotifyServiceAccount(sa.Namespace, sa.Name)
				}
			},
			DeleteFunc: func(obj any) {
				if sa, ok := deleted(obj).(*corev1.ServiceAccount); ok {
					c.NotifyServiceAccount(sa.Namespace, sa.Name)
				}
			},
		}},
		{&corev1.Node{}, toolscache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) {
				if n, ok := obj.(*corev1.Node); ok {
					c.NotifyNode(n)
				}
			},
			UpdateFunc: func(_, cur any) {
				if n, ok := cur.(*corev1.Node); ok {
					c.NotifyNode(n)
				}
			},
		}},
	}
	for _, h := range handlers {
		inf, err := informers.GetInformer(ctx, h.obj)
		if err != nil {
			return fmt.Errorf("watching %T for the re-check: %w", h.obj, err)
		}
		if _, err := inf.AddEventHandler(h.handler); err != nil {
			return fmt.Errorf("watching %T for the re-check: %w", h.obj, err)
		}
	}
	return nil
}

// deleted unwraps the last known state of an object deleted while the watch was down.
func deleted(obj any) any {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return obj
}
