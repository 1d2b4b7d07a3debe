// Package stepcatest runs a real step-ca for tests: it builds the pinned
// step-ca into the tool cache, writes a ca.json for a fresh test PKI with
// JWK provisioners, starts it on a loopback port and stops it with the
// test. The stepca backend's own tests and the daemon's tagged tests share
// it. It is for tests only and must not fake step-ca's behaviour.
package stepcatest
