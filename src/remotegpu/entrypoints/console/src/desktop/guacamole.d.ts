// guacamole-common-js ships no type declarations: the parts the desktop page uses.
declare module 'guacamole-common-js' {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const Guacamole: any
  export default Guacamole
}
