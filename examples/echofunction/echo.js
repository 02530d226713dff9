// The seeds' JavaScript echo function: `nex devrun examples/echofunction/echo.js
// --trigger_subject=js.echo`, then `nats req js.echo 'heya'`.
(subject, payload) => {
  console.log(subject);
  return payload;
};
