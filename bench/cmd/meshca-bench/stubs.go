package main

import "context"

// Phases not written yet.
func (b *bench) phaseCertManager(ctx context.Context) error { return nil }
func (b *bench) phaseWebhook(ctx context.Context) error     { return nil }
func (b *bench) phaseRenewal(ctx context.Context) error     { return nil }
func (b *bench) phaseMemory(ctx context.Context) error      { return nil }
