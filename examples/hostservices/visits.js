// A JavaScript function that counts how often each subject was called, in the workload's own
// key-value bucket (nex host services; see docs/host-services.md).
//
//   nex devrun ./visits.js --trigger_subject 'visits.>'
//   nats req visits.home ''        # visits.home: 1, then 2, ...
(subject, payload) => {
  const kv = this.hostServices.kv;
  const previous = kv.get(subject); // a Uint8Array, or null for a key never set
  const count = (previous === null ? 0 : Number(String.fromCharCode(...previous))) + 1;
  kv.set(subject, String(count));
  return `${subject}: ${count}`;
};
