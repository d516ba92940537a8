/**
 * `fleetca/reload`: for Node services that use the files cert-agent publishes. See
 * CertificateWatcher (servers and mTLS clients that follow the directory) and readCredentialSet
 * (one checked read of the current set).
 */
export { CertificateWatcher, type ReloadedEvent, type RejectedEvent, type WatchOptions } from "./certificate-watcher.js";
export { freshStaple, readCredentialSet, RejectedSet, SET_FILES, type CredentialSet } from "./credential-set.js";
